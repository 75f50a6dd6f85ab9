"""Engines: where the build's work runs. The stages describe work (a read unit, a chunk of texts to
count or sign, a shard to write) and hand it to an ``Executor`` (``mixer.core.executor``); the engine
decides where it runs. ``LocalEngine`` (``mixer.engine.local``) runs it on this machine's cores and
is the only place in mixer that creates process or thread pools."""

from mixer.core.executor import Executor, Pending
from mixer.engine.local import LocalEngine

__all__ = ["Executor", "LocalEngine", "Pending"]
