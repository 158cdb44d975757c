"""Several frontend processes on one port (``modelbay serve --workers N``).

All frontends serve HTTP and gRPC on the same ports (the kernel spreads connections with
SO_REUSEPORT). One of them, the leader (whoever holds ``run/leader.lock`` in the data
directory), runs the deployment controller, the zygote and every replica; the others
(followers) route requests to the same replicas over sockets the replicas listen on, and
learn what runs from the leader's control socket. Caches stay coherent through a small
shared file of change counters (``epochs``).
"""
