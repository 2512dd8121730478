"""Plugin chains: which plugin instances run for a request, in which order, compiled per config.

Rules (Kong 3, kept):
- One instance per enabled plugin entity per compiled config: `cls(config_model, index, entity)`.
- Scope precedence for one plugin name, most specific first (Kong's lookup_cfg, with consumer groups):
  consumer+route+service, group+route+service, consumer+route, consumer+service, group+route,
  group+service, route+service, consumer, group, route, service, global. A consumer in several
  groups tries them by group name at each group step (Kong sorts a consumer's groups by name).
- Plugins run by `priority`, highest first; the order of equal priorities is the name order.
- `certificate` and `rewrite` run global plugins only, as in Kong: `PluginSet.certificate`
  (those whose protocols include https or grpcs) during the TLS handshake,
  `PluginSet.rewrite_chain` before the router; `access`, `response`, `body` and `log` run the
  route's chain.
- A `certificate` phase runs inside OpenSSL's SNI callback and cannot wait: a coroutine there
  is refused when the config is compiled, naming the plugin.
- Consumer-scoped instances are resolved when their turn comes, so a consumer set by an
  authentication plugin (higher priority) selects the instances of the plugins after it.
- A plugin entity whose `protocols` lack the request's protocol does not run. On a route whose
  protocols are Kong Enterprise's `ws`/`wss`, the request's protocol is `ws` (plain) or `wss` (TLS):
  a plugin naming `ws` or `wss` runs there by those only (and never on http routes); one naming
  neither runs as for the request's HTTP scheme (`http` stands for `ws`, `https` for `wss`), so the
  HTTP defaults every bundled plugin stores keep applying to WebSocket routes. This is resolved when
  the chain is built: a WebSocket route's chain holds views of the instances whose `protocols` say
  `http`/`https` for `ws`/`wss`, and the codecs compare the scheme as for any route.
- A WebSocket route's chain has the pseudo-phase `handshake`, so every request on it takes the
  chain's path (`enter_chain`), where one that is not a WebSocket handshake is answered 400.

Theory of operation: for each (route, service) pair the chain is a tuple of `Link`s, one per
plugin name that applies, each holding its default instance and the instances by consumer id.
Group-scoped instances are resolved at compile time into the instances by consumer id of the
group's members, so the request path looks up one dict, as without groups.
Routes that have no route-scoped plugin share the chain of their service.
"""
from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:  # only for annotations: importing it costs an idle worker pydantic (see meshway.plugins)
    from meshway.plugins import Plugin

__all__ = ["Chain", "Link", "PluginSet", "compile_plugins", "SnapshotIndex", "HANDSHAKE", "WS_EMPTY_CHAIN"]

HANDSHAKE = "handshake"  # a WebSocket route's pseudo-phase (see the rules above)
_WS_FOR_HTTP = (("ws", "http"), ("wss", "https"))

log = logging.getLogger("meshway.proxy")


class SnapshotIndex:
    """The `ConfigIndex` plugins receive at init: read-only lookups over the snapshot."""

    def __init__(self, snapshot: Mapping[str, Any]):
        self._snapshot = snapshot
        self._consumers = {c["id"]: c for c in snapshot.get("consumers") or ()}

    def entities(self, collection: str) -> list[dict[str, Any]]:
        return list(self._snapshot.get(collection) or ())

    def consumer(self, consumer_id: str) -> dict[str, Any] | None:
        return self._consumers.get(consumer_id)


class Instance:
    """One plugin entity made live: the plugin object and its phase methods, async or not."""

    __slots__ = ("name", "priority", "plugin", "entity", "protocols", "phases", "buffers_request")

    def __init__(self, cls: type[Plugin], plugin: Plugin, entity: Mapping[str, Any]):
        self.name = cls.name
        self.priority = cls.priority
        self.plugin = plugin
        self.entity = entity
        self.protocols = frozenset(entity.get("protocols") or cls.default_protocols)
        # Read from the instance: a plugin may need the body only for some configs.
        self.buffers_request = plugin.buffers_request
        # Read from the instance: a plugin may set a phase to None (nothing to do for this
        # config) or to a plain function (nothing to wait for with this config).
        self.phases = {p: (fn, inspect.iscoroutinefunction(fn)) for p in cls.phases()
                       if (fn := getattr(plugin, p)) is not None}
        if self.phases.get("certificate", (None, False))[1]:
            raise ValueError("its certificate phase is a coroutine (async def); it runs inside the TLS handshake "
                             "and must be a plain function")

    def websocket_view(self) -> "Instance":
        """This instance as a WebSocket route's chain holds it: `protocols` say `http` where it runs
        for `ws` and `https` where it runs for `wss` (the codecs' scheme on such a route)."""
        view = object.__new__(Instance)
        for slot in Instance.__slots__:
            setattr(view, slot, getattr(self, slot))
        named = self.protocols if self.protocols & {"ws", "wss"} else \
            {ws for ws, http in _WS_FOR_HTTP if http in self.protocols}
        view.protocols = frozenset(http for ws, http in _WS_FOR_HTTP if ws in named)
        return view


class Link:
    """One plugin name in a chain: the instance to use by default and per consumer id."""

    __slots__ = ("name", "default", "by_consumer")

    def __init__(self, name: str, default: Instance | None, by_consumer: dict[str, Instance]):
        self.name = name
        self.default = default
        self.by_consumer = by_consumer

    def instance(self, consumer_id: str | None) -> Instance | None:
        if consumer_id is not None and self.by_consumer:
            inst = self.by_consumer.get(consumer_id)
            if inst is not None:
                return inst
        return self.default


class Chain:
    """The ordered plugin links for one (route, service), with what its phases need."""

    __slots__ = ("links", "phases", "async_phases", "buffers_request", "response_free", "head_free", "positions",
                 "fixed", "steps")

    def __init__(self, links: tuple[Link, ...], websocket: bool = False):
        self.links = links
        insts = [i for link in links for i in (link.default, *link.by_consumer.values()) if i is not None]
        self.phases = frozenset((*(p for i in insts for p in i.phases), *((HANDSHAKE,) if websocket else ())))
        self.async_phases = frozenset(p for i in insts for p, (_, is_async) in i.phases.items() if is_async)
        self.buffers_request = any(i.buffers_request for i in insts)
        # No plugin looks at the response (e.g. key-auth alone): its head takes the codec's
        # one-pass path, as without plugins.
        self.response_free = not self.phases & {"response", "body", "log"}
        # No plugin changes the response as it passes (headers set before it are fine): the
        # compiled relay can take it (`_h1parse.ResponseParser.relay`).
        self.head_free = not self.phases & {"response", "body"}
        # Per phase, the positions of the links with an instance defining it: a phase's loop
        # never visits the others (key-auth has no response phase, prometheus no access phase).
        self.positions = {p: tuple(i for i, link in enumerate(links)
                            if any(inst is not None and p in inst.phases for inst in (link.default, *link.by_consumer.values())))
                   for p in self.phases}
        # No instance scoped to a consumer: which method runs at each position is known before
        # any request, so `run_phase` takes the resolved steps (`resolve`) instead of looking up
        # link, instance, phase and protocols per plugin per request.
        self.fixed = not any(link.by_consumer for link in links)
        self.steps: dict[tuple[str, str], tuple] = {}

    def resolve(self, phase: str, scheme: str) -> tuple:
        """For a `fixed` chain: (position, method, is async, plugin name) of each plugin that
        runs `phase` for a request of `scheme`, in order; made once per (phase, scheme)."""
        steps = self.steps[(phase, scheme)] = tuple(
            (i, *inst.phases[phase], inst.name) for i in self.positions.get(phase, ())
            if (inst := self.links[i].default) is not None and phase in inst.phases and scheme in inst.protocols)
        return steps


EMPTY_CHAIN = Chain(())
WS_EMPTY_CHAIN = Chain((), websocket=True)


def _ref(entity: Mapping[str, Any], field: str) -> str | None:
    ref = entity.get(field)
    return ref.get("id") if isinstance(ref, Mapping) else ref


class PluginSet:
    """Every plugin instance of a config, and the chains built from them."""

    def __init__(self, instances: dict[tuple, dict[str, Instance]], groups_of: Mapping[str, tuple[str, ...]] = {}):
        # instances[(route_id, service_id, consumer_id, consumer_group_id)][name]; groups_of[consumer_id]:
        # the consumer's group ids in Kong's order (by group name)
        self.by_scope = instances
        self.groups_of = groups_of
        self.names = sorted({n for table in instances.values() for n in table},
                            key=lambda n: (-next(t[n].priority for t in instances.values() if n in t), n))
        members: dict[str, set[str]] = {}
        for consumer, groups in groups_of.items():
            for g in groups:
                members.setdefault(g, set()).add(consumer)
        self.consumer_scoped = {n: {k[2] for k, t in instances.items() if k[2] and n in t}
                                   | {c for k, t in instances.items() if k[3] and n in t for c in members.get(k[3], ())}
                                for n in self.names}
        self.route_scoped = {k[0] for k in instances if k[0]}
        self._cache: dict[tuple, Chain] = {}
        self._ws_views: dict[int, Instance] = {}  # id(instance) -> its websocket_view, one per instance
        self.global_chain = self._build(None, None)
        self.rewrite = _global_with(self.global_chain, "rewrite")
        # Consumer-scoped instances cannot apply before anyone is authenticated: defaults only.
        self.rewrite_chain = Chain(tuple(Link(i.name, i, {}) for i in self.rewrite))
        self.certificate = tuple(i for i in _global_with(self.global_chain, "certificate")
                                 if i.protocols & _TLS_PROTOCOLS)

    def chain_for(self, route_id: str | None, service_id: str | None, websocket: bool = False) -> Chain:
        """The chain of a route (of its service when no plugin names the route); `websocket` for a
        route whose protocols are ws/wss (see the rules above)."""
        key = (route_id if route_id in self.route_scoped else None, service_id)
        chain = self._cache.get(key)
        if chain is None:
            chain = self._cache[key] = self._build(*key)
        if not websocket:
            return chain
        ws = self._cache.get((*key, "ws"))
        if ws is None:
            ws = self._cache[(*key, "ws")] = Chain(tuple(Link(link.name, self._ws_view(link.default), {
                c: self._ws_view(i) for c, i in link.by_consumer.items()}) for link in chain.links), websocket=True)
        return ws

    def _ws_view(self, inst: Instance | None) -> Instance | None:
        if inst is None:
            return None
        view = self._ws_views.get(id(inst))
        if view is None:
            view = self._ws_views[id(inst)] = inst.websocket_view()
        return view

    def _build(self, r: str | None, s: str | None) -> Chain:
        if not self.names:
            return EMPTY_CHAIN
        get = self.by_scope.get
        links = []
        for name in self.names:
            plain = [(r, s, None, None), (r, None, None, None), (None, s, None, None), (None, None, None, None)]
            default = _first(get, plain, name, r, s)
            by_consumer = {}
            for c in self.consumer_scoped[name]:
                inst = _first(get, _consumer_order(r, s, c, self.groups_of.get(c, ())), name, r, s)
                if inst is not None and inst is not default:
                    by_consumer[c] = inst
            if default is not None or by_consumer:
                links.append(Link(name, default, by_consumer))
        return Chain(tuple(links))


_TLS_PROTOCOLS = frozenset({"https", "grpcs"})


def _consumer_order(r: str | None, s: str | None, c: str, groups: tuple[str, ...]) -> list[tuple]:
    """The scopes tried for consumer `c` (member of `groups`, in order), most specific first: Kong's lookup_cfg."""
    return [(r, s, c, None), *((r, s, None, g) for g in groups), (r, None, c, None), (None, s, c, None),
            *((r, None, None, g) for g in groups), *((None, s, None, g) for g in groups), (r, s, None, None),
            (None, None, c, None), *((None, None, None, g) for g in groups), (r, None, None, None),
            (None, s, None, None), (None, None, None, None)]


def _global_with(chain: Chain, phase: str) -> tuple[Instance, ...]:
    """The global instances of `chain` (by priority) that define `phase`."""
    return tuple(link.default for link in chain.links if link.default is not None and phase in link.default.phases)


def _first(get, keys: list[tuple], name: str, r: str | None, s: str | None) -> Instance | None:
    for key in keys:
        if (key[0] is not None and r is None) or (key[1] is not None and s is None):
            continue
        table = get(key)
        if table is not None and name in table:
            return table[name]
    return None


def compile_plugins(snapshot: Mapping[str, Any], available: Mapping[str, type[Plugin]],
                    enabled: Iterable[str] | None = None) -> PluginSet:
    """Instantiate every enabled plugin entity; raise ValueError naming a plugin that cannot load."""
    index = SnapshotIndex(snapshot)
    instances: dict[tuple, dict[str, Instance]] = {}
    for entity in snapshot.get("plugins") or ():
        if entity.get("enabled") is False:
            continue
        name = entity["name"]
        cls = available.get(name)
        if cls is None:
            raise ValueError(f"plugin '{name}' ({entity.get('id')}) is not installed on this node")
        try:
            config = cls.Config.model_validate(entity.get("config") or {})
            plugin = cls(config, index, entity)
            instance = Instance(cls, plugin, entity)
        except Exception as e:
            raise ValueError(f"plugin '{name}' ({entity.get('id')}) failed to initialize: {e}") from None
        key = (_ref(entity, "route"), _ref(entity, "service"), _ref(entity, "consumer"), _ref(entity, "consumer_group"))
        instances.setdefault(key, {})[name] = instance
    return PluginSet(instances, _groups_of(snapshot))


def _groups_of(snapshot: Mapping[str, Any]) -> dict[str, tuple[str, ...]]:
    """consumer id -> the ids of its consumer groups, by group name (Kong's order for several groups)."""
    names = {g["id"]: g.get("name") or "" for g in snapshot.get("consumer_groups") or ()}
    found: dict[str, list[str]] = {}
    for m in snapshot.get("consumer_group_consumers") or ():
        group, consumer = _ref(m, "consumer_group"), _ref(m, "consumer")
        if group in names and consumer:
            found.setdefault(consumer, []).append(group)
    return {c: tuple(sorted(gs, key=lambda g: (names[g], g))) for c, gs in found.items()}
