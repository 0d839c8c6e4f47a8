"""Start-up without garbage collection.

Importing the stack (mlflow, the Databricks SDK, the agent's framework) and building the agent
creates millions of objects that live as long as the process. A collection while they are being
created finds nothing to free and walks them all again, each time: pausing collection until they
are built takes about a quarter off the start-up CPU. Afterwards one collection runs, and what is
left is frozen: later collections walk only what requests create.
"""

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collection_paused_then_frozen() -> Iterator[None]:
    """No garbage collection inside the block; after it, a collection, then everything alive is
    frozen. If the block raises, collection is back on and nothing is frozen."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
    gc.collect()
    gc.freeze()
