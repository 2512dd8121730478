"""A node's proxy worker: `python -m meshway.node.worker`, the proxy with the mesh plugged in.

The node composes the parts: `meshway.proxy.worker` knows nothing of the mesh; importing
`meshway.mesh` installs it into the proxy's hooks (`meshway.proxy.meshhooks`) before the worker runs.
"""
import meshway.mesh  # noqa: F401  (plugs the mesh into the proxy)
from meshway.proxy.worker import main

if __name__ == "__main__":
    main()
