"""A node's proxy worker: `python -m meshway.node.worker`, the proxy with the mesh plugged in.

The node composes the parts: `meshway.proxy.worker` knows nothing of the mesh; importing
`meshway.mesh` installs it into the proxy's hooks (`meshway.proxy.meshhooks`) before the worker runs.

The garbage collector is off while the worker imports its modules: what they allocate lives as
long as the process, so the collections their allocations would trigger (~18M instructions of
the ~410M the imports take) find nothing to free. Then those objects are frozen (moved to the
permanent generation: the worker's later full collections do not traverse them) and the
collector runs as usual.
"""
import gc

if __name__ == "__main__":  # run as the process, not imported
    gc.disable()

import meshway.mesh  # noqa: E402,F401  (plugs the mesh into the proxy)
from meshway.proxy.worker import main  # noqa: E402

if __name__ == "__main__":
    gc.freeze()
    gc.enable()
    main()
