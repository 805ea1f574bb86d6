"""Deployment: the parm CLI, the local launcher, Docker and Kubernetes."""

import os

# The launcher starts children while gRPC's threads run; gRPC's fork handlers then
# can abort the forked child (seen: ev_epoll1_linux.cc "Check failed").  The children
# exec at once and need none of them.  Set before grpc initialises.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
