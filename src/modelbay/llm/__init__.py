"""The LLM engine: Llama-family models, a paged KV cache, continuous batching, sampling.

Imports torch, the tokenizer and the weight readers, never the server stack: it runs
anywhere torch does, and the replica process wraps it.
"""
