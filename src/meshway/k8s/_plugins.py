"""KongPlugin and KongClusterPlugin, attached with `konghq.com/plugins` as KIC attaches them.

Rules (KIC's `internal/dataplane/kongstate/kongstate.go` and `plugin.go`):
- `konghq.com/plugins: a,b` on an Ingress binds each plugin to the routes made from it, on a
  Kubernetes Service to the Kong services made from it, on a KongConsumer to that consumer, on an
  HTTPRoute to its routes. A name is looked up as a KongPlugin in the referrer's namespace, then as
  a KongClusterPlugin.
- A plugin bound to a consumer and to routes or services becomes one plugin per (consumer, route)
  and (consumer, service) pair, not separate ones (KIC's `GetCombinations`).
- `instance_name` gets a suffix per binding (sha256 of the binding, 9 hex digits), as KIC does, so
  one KongPlugin used twice does not collide.
- A KongClusterPlugin labelled `global: "true"` (and of our ingress class) is a global plugin; two
  global ones for the same plugin name are both left out, as KIC does.

Where we differ from KIC (on purpose): a referrer whose plugin is missing or invalid is left out
with its error, instead of being served without the plugin. A missing `key-auth` must not open a
route to everyone; KIC serves it (its users report it: KIC#539, #6519 are the opposite failure).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json

import yaml

from meshway.k8s import _grants
from meshway.k8s._annotations import Bad
from meshway.model import parse_declarative
from meshway.model._errors import DeclarativeError

PLUGINS_ANNOTATION = "konghq.com/plugins"
WHERE = f"metadata.annotations[{PLUGINS_ANNOTATION}]"


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def referenced(obj: dict) -> list[str]:
    value = (_meta(obj).get("annotations") or {}).get(PLUGINS_ANNOTATION) or ""
    return [name.strip() for name in value.split(",") if name.strip()]


class Plugins:
    """Resolves and validates KongPlugins for one translation; each plugin is checked once."""

    def __init__(self, objects, tags, error):
        self.objects, self.tags, self.error = objects, tags, error
        self._cache: dict[tuple, tuple[dict | None, str | None]] = {}

    def for_referrer(self, obj: dict, kind: str) -> list[tuple[tuple, dict]]:
        """(plugin key, plugin template) for each name in the referrer's annotation; Bad naming the
        annotation when one is missing, invalid, or in another namespace without a ReferenceGrant
        (the referrer is then left out)."""
        ns = _meta(obj).get("namespace") or ""
        out = []
        for name in referenced(obj):
            plugin_ns, _, plugin_name = name.rpartition(":")
            if plugin_ns and plugin_ns != ns:
                if not _grants.permitted(self.objects, kind, ns, "KongPlugin", plugin_ns, plugin_name):
                    raise Bad(WHERE, f"no ReferenceGrant in namespace {plugin_ns!r} lets {kind} {ns}/"
                                     f"{_meta(obj).get('name')} use KongPlugin {plugin_ns}/{plugin_name}")
                if (plugin_ns, plugin_name) not in self.objects.kong_plugins:  # no cluster plugin across
                    raise Bad(WHERE, f"referenced KongPlugin {plugin_ns}/{plugin_name} does not exist")
            key, template, problem = self.lookup(plugin_ns or ns, plugin_name)
            if problem:
                raise Bad(WHERE, problem)
            out.append((key, template))
        return out

    def lookup(self, ns: str, name: str) -> tuple[tuple, dict | None, str | None]:
        if (ns, name) in self.objects.kong_plugins:
            key = ("KongPlugin", ns, name)
            obj = self.objects.kong_plugins[(ns, name)]
        elif ("", name) in self.objects.kong_cluster_plugins:
            key = ("KongClusterPlugin", "", name)
            obj = self.objects.kong_cluster_plugins[("", name)]
        else:
            why = self.objects.left_out.get(("KongPlugin", ns, name)) or \
                self.objects.left_out.get(("KongClusterPlugin", "", name))
            if why:
                return ("", ns, name), None, f"KongPlugin or KongClusterPlugin {name!r} is invalid: {why}"
            return ("", ns, name), None, f"referenced KongPlugin or KongClusterPlugin {name!r} does not exist"
        if key not in self._cache:
            self._cache[key] = self._build(key[0], obj)
        template, problem = self._cache[key]
        return key, template, problem

    def _build(self, kind: str, obj: dict) -> tuple[dict | None, str | None]:
        try:
            template = plugin_from_crd(obj, self.objects.secrets, self.tags(obj, kind))
            validate(template)
        except Bad as bad:
            self.error(kind, obj, bad.field, bad.reason)
            meta = _meta(obj)
            where = f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else meta.get("name")
            return None, f"{kind} {where} is invalid: {bad.field}: {bad.reason}"
        return template, None

    def global_plugins(self, in_class) -> list[dict]:
        """KongClusterPlugins labelled global: "true" and of our class."""
        by_name: dict[str, list[dict]] = {}
        for key in sorted(self.objects.kong_cluster_plugins):
            obj = self.objects.kong_cluster_plugins[key]
            if (_meta(obj).get("labels") or {}).get("global") == "true" and in_class(obj):
                by_name.setdefault(obj.get("plugin") or "", []).append(obj)
        out = []
        for plugin_name, objs in by_name.items():
            if len(objs) > 1:
                for obj in objs:
                    self.error("KongClusterPlugin", obj, "plugin",
                               f"more than one global KongClusterPlugin for {plugin_name!r}: all are left out")
                continue
            _, template, _ = self.lookup("", _meta(objs[0]).get("name"))
            if template is not None:
                out.append(dict(template))
        return out


def plugin_from_crd(obj: dict, secrets: dict, tags: list[str]) -> dict:
    """A KongPlugin/KongClusterPlugin to a plugin entity without its bindings; Bad names the field."""
    name = obj.get("plugin")
    if not name:
        raise Bad("plugin", "required field missing")
    config = obj.get("config")
    if config is not None and not isinstance(config, dict):
        raise Bad("config", "expected an object")
    config = dict(config or {})
    for i, patch in enumerate(obj.get("configPatches") or []):
        config = _patched(config, patch, obj, secrets, f"configPatches[{i}]")
    if obj.get("configFrom"):
        if config:
            raise Bad("configFrom", "config and configFrom cannot both be set")
        config = _config_from_secret(obj, secrets)
    for field_ in ("ordering", "run_on"):
        if obj.get(field_):
            raise Bad(field_, "not supported by meshway")
    plugin = {"name": name, "config": config, "enabled": not obj.get("disabled", False), "tags": tags}
    if obj.get("protocols"):
        plugin["protocols"] = list(obj["protocols"])
    if obj.get("instance_name"):
        plugin["instance_name"] = obj["instance_name"]
    return plugin


def _config_from_secret(obj: dict, secrets: dict) -> dict:
    config = _secret_value(obj, (obj.get("configFrom") or {}).get("secretKeyRef") or {}, secrets,
                           "configFrom.secretKeyRef")
    if not isinstance(config, dict):
        raise Bad("configFrom.secretKeyRef", "the Secret's value is not an object")
    return config


def _secret_value(obj: dict, ref: dict, secrets: dict, where: str):
    """The JSON (or YAML) value of a Secret's key: the KongPlugin's namespace unless the reference
    names one (a KongClusterPlugin's must)."""
    ns = ref.get("namespace") or _meta(obj).get("namespace") or ""
    if not ref.get("name") or not ref.get("key"):
        raise Bad(where, "name and key are required")
    secret = secrets.get((ns, ref["name"]))
    if secret is None:
        raise Bad(where, f"Secret {ns}/{ref['name']} not found")
    raw = (secret.get("data") or {}).get(ref["key"])
    if raw is None:
        raise Bad(where, f"Secret {ns}/{ref['name']} has no key {ref['key']!r}")
    try:
        return yaml.safe_load(base64.b64decode(raw, validate=True))
    except (binascii.Error, yaml.YAMLError) as e:
        raise Bad(where, f"Secret {ns}/{ref['name']}[{ref['key']}] is not JSON or YAML: {e}") from None


def _patched(config: dict, patch: dict, obj: dict, secrets: dict, where: str) -> dict:
    """KIC's configPatches: a JSON-patch `add` of a Secret's value at `path` (JSON pointer), creating
    the objects on the way (its EnsurePathExistsOnAdd); the empty path replaces the whole config."""
    value = _secret_value(obj, ((patch.get("valueFrom") or {}).get("secretKeyRef")) or {}, secrets,
                          where + ".valueFrom.secretKeyRef")
    path = patch.get("path") or ""
    if not path:
        if not isinstance(value, dict):
            raise Bad(where + ".path", "the whole config must be an object")
        return value
    if not path.startswith("/"):
        raise Bad(where + ".path", f"a JSON pointer starts with /, got {path!r}")
    config = json.loads(json.dumps(config))  # the KongPlugin's own config is never modified
    keys = [k.replace("~1", "/").replace("~0", "~") for k in path[1:].split("/")]
    node = config
    for key in keys[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise Bad(where + ".path", f"{path!r} goes through a value that is not an object")
    node[keys[-1]] = value
    return config


def validate(plugin: dict) -> None:
    """The plugin's own schema, as the node checks it, so that one bad KongPlugin is caught here and
    never makes the node refuse the whole push."""
    try:
        parse_declarative({"_format_version": "3.0", "plugins": [dict(plugin, tags=[])]})
    except DeclarativeError as e:
        # the first error, on the KongPlugin's own field names (its `plugin` is the entity's `name`)
        field_, reason = next(iter(e.errors.items()))
        field_ = field_.removeprefix("plugins[0].")
        raise Bad("plugin" if field_ == "name" else field_, reason) from None


def bind(bindings: list[tuple[tuple, dict, dict]]) -> list[dict]:
    """(plugin key, template, {"route"|"service"|"consumer": id}) -> plugin entities, with consumer
    bindings combined with route and service ones as KIC combines them."""
    grouped: dict[tuple, tuple[dict, list[dict]]] = {}
    for key, template, target in bindings:
        grouped.setdefault(key, (template, []))[1].append(target)
    out = []
    for key in sorted(grouped):
        template, targets = grouped[key]
        consumers = _unique([t for t in targets if "consumer" in t])
        groups = _unique([t for t in targets if "consumer_group" in t])
        others = _unique([t for t in targets if "consumer" not in t and "consumer_group" not in t])
        scoped = consumers or groups  # KIC's GetCombinations: consumers, else groups (never both)
        combos = [{**c, **o} for c in scoped for o in others] if scoped and others else scoped or others
        for combo in combos:
            out.append(_instance(template, combo))
    return out


def _unique(items: list[dict]) -> list[dict]:
    seen, out = set(), []
    for item in items:
        marker = json.dumps(item, sort_keys=True)
        if marker not in seen:
            seen.add(marker)
            out.append(item)
    return out


def _instance(template: dict, combo: dict) -> dict:
    plugin = {**template, **combo}
    if template.get("instance_name"):
        hashed = "".join(f"_{k.replace('consumer_group', 'group')}-{combo[k]}"
                         for k in ("service", "route", "consumer", "consumer_group") if k in combo)
        plugin["instance_name"] = f"{template['instance_name']}-{hashlib.sha256(hashed.encode()).hexdigest()[:9]}"
    return plugin
