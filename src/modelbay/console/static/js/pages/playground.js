// The LLM playground: chat with a language model, its answer streamed token by token
// (OpenAI's chat completions with stream: true; Stop aborts the request), and compare two
// texts with an embedding model (cosine similarity of their embeddings). Messages are
// text nodes: whatever a model answers shows as text, never as markup.

import { h, field, notice, replace } from "../dom.js";
import { api, ApiError, can, path, streamEvents } from "../api.js";

export const nav = [{ href: "#/playground", label: "Playground", scope: "infer" }];
export const routes = [{ pattern: "/playground", render: renderPlayground }];

const LOOKUPS_AT_ONCE = 6;

/**
 * The models this key may use, by kind: {llms, embedders}. GET /v1/models lists names
 * only; each one's latest version says its format (llm, sentence_transformers).
 */
async function modelsByKind() {
  const { data } = await api("GET", "/v1/models");
  const names = data.map((m) => m.id);
  const formats = new Map();
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const name = names[next++];
      try {
        const version = await api("GET", path`/api/v1/models/${name}/versions/latest`);
        formats.set(name, version.format);
      } catch {
        // no version yet, or gone meanwhile: not a model to talk to
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(LOOKUPS_AT_ONCE, names.length) }, worker));
  const of = (format) => names.filter((name) => formats.get(name) === format).sort();
  return { llms: of("llm"), embedders: of("sentence_transformers") };
}

function modelSelect(name, models, wanted) {
  return h(
    "select",
    { name, required: true, disabled: !models.length },
    models.length ? null : h("option", { value: "" }, "none available"),
    models.map((model) => h("option", { value: model, selected: model === wanted }, model)),
  );
}

function message(role, text = "") {
  const body = document.createTextNode(text);
  const el = h("div", { class: `msg ${role}`, "data-role": role }, h("span", { class: "msg-role" }, role === "user" ? "You" : "Assistant"), h("div", { class: "msg-text" }, body));
  return { el, body };
}

function chatPanel(llms, wanted) {
  const model = modelSelect("model", llms, wanted);
  const temperature = h("input", { type: "number", name: "temperature", min: 0, max: 2, step: 0.1, value: 0.7 });
  const maxTokens = h("input", { type: "number", name: "max_tokens", min: 1, max: 8192, step: 1, value: 256 });
  const system = h("textarea", { name: "system", rows: 2, placeholder: "You are a helpful assistant." });
  const prompt = h("textarea", { name: "message", rows: 3, required: true, placeholder: "Ask something… (Enter sends, Shift+Enter starts a new line)" });
  const transcript = h("div", { class: "chat transcript", role: "log", "aria-label": "Conversation", "aria-live": "polite" });
  const send = h("button", { type: "submit", class: "primary", disabled: !llms.length }, "Send");
  const stop = h("button", { type: "button", disabled: true }, "Stop");
  const clear = h("button", { type: "button" }, "Clear");
  const out = h("div", { class: "out" });
  const usage = h("p", { class: "hint usage", "aria-live": "polite" });
  let history = [];
  let controller = null;

  const busy = (on) => {
    send.disabled = on || !llms.length;
    stop.disabled = !on;
    clear.disabled = on;
  };
  const scroll = () => {
    transcript.scrollTop = transcript.scrollHeight;
  };

  const ask = async () => {
    const text = prompt.value.trim();
    if (!text || !model.value || controller) return;
    replace(out);
    replace(usage);
    const user = message("user", text);
    const answer = message("assistant");
    answer.el.dataset.state = "streaming";
    transcript.append(user.el, answer.el);
    scroll();
    prompt.value = "";
    const messages = [];
    if (system.value.trim()) messages.push({ role: "system", content: system.value.trim() });
    messages.push(...history, { role: "user", content: text });
    const body = {
      model: model.value,
      messages,
      stream: true,
      stream_options: { include_usage: true },
      temperature: Number(temperature.value),
      max_tokens: parseInt(maxTokens.value, 10),
    };
    if (Number.isNaN(body.temperature)) delete body.temperature;
    if (Number.isNaN(body.max_tokens)) delete body.max_tokens;
    controller = new AbortController();
    busy(true);
    const started = performance.now();
    let counted = null;
    let finish = null;
    try {
      await streamEvents(
        "/v1/chat/completions",
        body,
        (data) => {
          if (data.error) throw new ApiError(data.error.code || 500, data.error.message || "the stream failed");
          for (const choice of data.choices || []) {
            if (choice.delta && choice.delta.content) answer.body.appendData(choice.delta.content);
            if (choice.finish_reason) finish = choice.finish_reason;
          }
          if (data.usage) counted = data.usage;
          scroll();
        },
        controller.signal,
      );
      answer.el.dataset.state = "done";
      if (finish) answer.el.dataset.finish = finish;
    } catch (err) {
      if (err.name === "AbortError") {
        answer.el.dataset.state = "stopped";
        replace(out, notice("info", "Stopped."));
      } else {
        answer.el.dataset.state = "error";
        replace(out, notice("error", err.message));
      }
    } finally {
      controller = null;
      busy(false);
    }
    history.push({ role: "user", content: text });
    if (answer.body.data) history.push({ role: "assistant", content: answer.body.data });
    if (counted) {
      const seconds = (performance.now() - started) / 1000;
      const rate = seconds > 0 ? ` · ${(counted.completion_tokens / seconds).toFixed(1)} tokens/s` : "";
      usage.textContent = `${counted.prompt_tokens} prompt + ${counted.completion_tokens} completion tokens${rate}${finish === "length" ? " · stopped at max tokens" : ""}`;
    }
    prompt.focus();
  };

  const form = h(
    "form",
    { class: "chat-form", "aria-label": "Your turn" },
    field("Message", prompt),
    h("div", { class: "row" }, send, stop, clear),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ask();
  });
  prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      ask();
    }
  });
  stop.addEventListener("click", () => controller && controller.abort());
  clear.addEventListener("click", () => {
    history = [];
    replace(transcript);
    replace(out);
    replace(usage);
  });
  model.addEventListener("change", () => clear.click());

  const panel = h(
    "section",
    { class: "card playground-chat", "aria-labelledby": "chat-title" },
    h("h2", { id: "chat-title" }, "Chat"),
    llms.length ? null : notice("info", "No language model is available to this key. Push a GGUF model (for example SmolLM2) to chat with it."),
    h("div", { class: "row" }, field("Model", model), field("Temperature", temperature), field("Max tokens", maxTokens)),
    field("System prompt", system, "optional; sent first with every message"),
    transcript,
    form,
    usage,
    out,
  );
  return { panel, stop: () => controller && controller.abort() };
}

/** The cosine of the angle between two vectors: 1 for the same direction. */
export function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i += 1) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return na && nb ? dot / Math.sqrt(na * nb) : 0;
}

function embeddingsPanel(embedders) {
  const model = modelSelect("embedding_model", embedders);
  const first = h("textarea", { name: "first", rows: 2, required: true, placeholder: "A cat sits on the mat." });
  const second = h("textarea", { name: "second", rows: 2, required: true, placeholder: "A kitten rests on the rug." });
  const result = h("output", { class: "similarity", "aria-live": "polite" });
  const out = h("div", { class: "out" });
  const compare = h("button", { type: "submit", class: "primary", disabled: !embedders.length }, "Compare");
  const form = h(
    "form",
    { class: "embeddings-form", "aria-label": "Compare two texts" },
    field("Embedding model", model),
    h("div", { class: "grid two" }, field("First text", first), field("Second text", second)),
    h("div", { class: "row" }, compare, result),
    out,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(out);
    compare.disabled = true;
    try {
      const answer = await api("POST", "/v1/embeddings", {
        json: { model: model.value, input: [first.value, second.value], encoding_format: "float" },
      });
      const [a, b] = answer.data.sort((x, y) => x.index - y.index).map((d) => d.embedding);
      const similarity = cosine(a, b);
      result.dataset.similarity = String(similarity);
      result.textContent = `Cosine similarity: ${similarity.toFixed(4)} (${a.length} dimensions)`;
    } catch (err) {
      delete result.dataset.similarity;
      replace(result);
      replace(out, notice("error", err.message));
    } finally {
      compare.disabled = !embedders.length;
    }
  });
  return h(
    "section",
    { class: "card playground-embeddings", "aria-labelledby": "embed-title" },
    h("h2", { id: "embed-title" }, "Embeddings"),
    h("p", { class: "hint" }, "How close in meaning two texts are: near 1 for the same meaning, near 0 for unrelated ones."),
    embedders.length ? null : notice("info", "No embedding model is available to this key."),
    form,
  );
}

async function renderPlayground(main, _params, query) {
  if (!can("infer")) {
    replace(main, h("h1", {}, "Playground"), notice("info", "Your key may not run models (it needs the infer scope)."));
    return null;
  }
  const { llms, embedders } = await modelsByKind();
  const chat = chatPanel(llms, query.get("model"));
  replace(main, h("h1", {}, "Playground"), chat.panel, embeddingsPanel(embedders));
  return chat.stop;
}
