from tests.helpers.node import node_factory  # noqa: F401  (fixture)
