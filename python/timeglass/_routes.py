"""Route templates: which route ("/api/v1/items/{item_id}") served a request.

The template is the whole path of the route inside the application: every
mount path ("/sub", "/tenants/{tenant}"), every router prefix ("/api/v1" +
"/items") and the route's own path ("" or "/{item_id:int}"). It never holds
the application's root_path (uvicorn --root-path, FastAPI(root_path=...)),
which is where the application is deployed rather than one of its routes:
"/items/{item_id}" names the same route behind any proxy.

After routing (the response starts, or the application returns), the
template is read from what the routers left in the scope, the scope being
one dict that every router updates in place:

* scope["route"] is the route that matched last, the innermost one: its
  `path` is the template below the last mount. FastAPI sets it for its own
  routes, Starlette 1.x routers for every route.
* FastAPI 0.16x no longer copies the routes of an included router into the
  including one: the route in scope["route"] is the router's own, without
  the include prefixes, and the prefixed version is the route context that
  FastAPI leaves in scope["fastapi"]["effective_route_context"] (its
  `original_route` is that route, its `path` the full path).
* scope["root_path"] grew by each mount's concrete path ("/tenants/acme"):
  the part added since the request entered the application is mapped to
  the mounts' templates by matching the mounts alone, once per application
  and concrete part (see _mount_prefix).

fast_template() is the common case (no mount, a route object left in the
scope); _speedups.c does the same in C. after_routing() covers the rest.
When the scope does not tell (no route object in it: a plain Starlette
route under an older Starlette, a 404 inside a mount, a response sent before
routing), the route is found the way the router finds it: each route's
`matches()`, a full match first, else the first partial one (a 405), mounts
and hosts entered, FastAPI 0.16x included routers flattened into their
prefixed routes (route_template). Websocket handshakes are named that way
before the application runs.

Results of matching are cached per router, keyed by (scope type, method,
path), and mount prefixes by the concrete part of the path the mounts took;
a router whose route list changes gets fresh caches, and answers that
depend on the Host header are never cached.
"""

CACHE_MAX = 4096  # entries per router and kind before the cache starts over

_caches = {}  # id(router) -> _Cache

_FASTAPI = "fastapi"  # FastAPI 0.16x's own scope entry
_EFFECTIVE = "effective_route_context"


class _Cache:
    __slots__ = ("router", "routes_id", "count", "version", "entries", "prefixes")

    def __init__(self, router, routes, version):
        self.router = router  # keeps id(router) from being reused
        self.routes_id = id(routes)
        self.count = len(routes)
        self.version = version
        self.entries = {}  # (type, method, path) -> template or None
        self.prefixes = {}  # concrete mount part ("/tenants/acme") -> template ("/tenants/{tenant}")


def _cache_of(router):
    """The caches of router, or None when it has no routes."""
    routes = getattr(router, "routes", None)
    if not routes:
        return None
    version = getattr(router, "_routes_version", None)  # FastAPI 0.16x: bumped by include_router
    cache = _caches.get(id(router))
    if cache is None or cache.routes_id != id(routes) or cache.count != len(routes) or \
            cache.version != version:
        cache = _caches[id(router)] = _Cache(router, routes, version)
    return cache


def _put(entries, key, value):
    if len(entries) >= CACHE_MAX:
        entries.clear()
    entries[key] = value


def fast_template(scope, root0):
    """The template when the scope gives it outright, else None.

    The request is not inside a mount (root_path is still root0) and the
    scope holds the route that served it. The same as fast_route() in
    _speedups.c: both must give the same answers.
    """
    route = scope.get("route")
    if route is None or scope.get("root_path", "") != root0:
        return None
    fastapi = scope.get(_FASTAPI)
    context = fastapi.get(_EFFECTIVE) if type(fastapi) is dict else None
    if context is not None:
        if getattr(context, "original_route", None) is not route:
            return None
        path = getattr(context, "path", None)
    else:
        path = getattr(route, "path", None)
    return path if type(path) is str and path else None


def after_routing(scope, path0, root0, app):
    """The template of the route that served scope, or None (no route).

    scope is the request's scope after routing (or at any time: what the
    routers have not filled in yet is found by matching); path0 and root0
    are its path and root_path when it entered app, the Starlette/FastAPI
    application whose routes apply.
    """
    leaf = _leaf(scope)
    if leaf is not None:
        root = scope.get("root_path", "")
        if root == root0:
            return leaf
        if root.startswith(root0):
            prefix = _mount_prefix(scope, path0, root0, app, root[len(root0):])
            if prefix is not None:
                return prefix + leaf
    elif "router" in scope and "endpoint" not in scope and scope.get("root_path", "") == root0:
        return None  # the application's router ran and found no route
    view = dict(scope)
    view["path"] = path0
    view["root_path"] = root0
    view.pop("path_params", None)
    return route_template(view, app)


def _leaf(scope):
    """The template of the innermost route from the scope, below the last
    mount, or None when the scope does not hold it."""
    Match, Mount, Host = _kinds()
    route = scope.get("route")
    fastapi = scope.get(_FASTAPI)
    context = fastapi.get(_EFFECTIVE) if type(fastapi) is dict else None
    if context is not None:
        if route is not None and getattr(context, "original_route", None) is route:
            path = getattr(context, "path", None)  # a FastAPI route of an included router
            return path if type(path) is str and path else None
        # A Starlette route or websocket route of an included router: FastAPI
        # matched a prefixed copy of it. (A context left by an outer level
        # that chose a mount holds a Mount: that is no answer.)
        copy = getattr(context, "starlette_route", None)
        if copy is not None and (route is None or route is copy or _inner(route)) and not _inner(copy):
            path = getattr(copy, "path", None)
            return path if type(path) is str and path else None
    if route is None or _inner(route):
        return None
    path = getattr(route, "path", None)
    return path if type(path) is str and path else None


def _inner(route):
    """True for routes that lead to more routes (mounts, hosts, included routers)."""
    _, Mount, Host = _kinds()
    return isinstance(route, (Mount, Host)) or hasattr(route, "original_router")


def _mount_prefix(scope, path0, root0, app, part):
    """The template of the mounts that took `part` of the path ("/tenants/acme"
    -> "/tenants/{tenant}"), or None when they cannot be told."""
    router = getattr(app if app is not None else scope.get("app"), "router", None)
    cache = _cache_of(router)
    if cache is None:
        return None
    try:
        return cache.prefixes[part]
    except KeyError:
        pass
    view = dict(scope)
    view["path"] = path0
    view["root_path"] = root0
    view.pop("path_params", None)
    try:
        prefix, cacheable = _mounts(cache.router.routes, view, part)
    except Exception:
        return None
    if cacheable:
        _put(cache.prefixes, part, prefix)
    return prefix


def _mounts(routes, scope, part):
    """(template of the mounts among routes that take `part`, cacheable).

    The router takes the first mount that matches; any path under `part`
    goes to the same mounts (a mount matches on its own segments only), so
    the answer holds for every request whose mounts took `part`, unless a
    Host route (the Host header) decided."""
    Match, Mount, Host = _kinds()
    root = scope.get("root_path", "")
    for route in _flat(routes):
        if isinstance(route, Host):
            match, child = route.matches(scope)
            if match is Match.FULL:
                inner = dict(scope)
                inner.update(child)
                return _mounts(route.routes, inner, part)[0], False
            continue
        if not isinstance(route, Mount):
            continue
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        took = child.get("root_path", root)[len(root):]
        if took == part:
            return route.path, True
        if not took or not part.startswith(took):
            return None, True
        inner = dict(scope)
        inner.update(child)
        prefix, cacheable = _mounts(route.routes, inner, part[len(took):])
        return (route.path + prefix if prefix is not None else None), cacheable
    return None, True


def route_template(scope, app=None):
    """The template of the route that will serve scope, or None (e.g. a 404),
    found by matching the routes (the router need not have run).

    app is the Starlette/FastAPI application (default: scope["app"]).
    """
    cache = _cache_of(getattr(app if app is not None else scope.get("app"), "router", None))
    if cache is None:
        return None
    key = (scope["type"], scope.get("method"), scope["path"])
    try:
        return cache.entries[key]
    except KeyError:
        pass
    template, cacheable = _match(cache.router.routes, scope)
    if cacheable:
        _put(cache.entries, key, template)
    return template


_starlette = None  # (Match, Mount, Host), imported on first use


def _kinds():
    global _starlette
    if _starlette is None:
        from starlette.routing import Host, Match, Mount

        _starlette = (Match, Mount, Host)
    return _starlette


def _flat(routes):
    """routes in the order the router tries them, FastAPI 0.16x included
    routers replaced by the routes they hold, with their prefixes: route
    objects, or FastAPI route contexts (`matches()` and a prefixed `path`)."""
    for route in routes:
        candidates = getattr(route, "effective_candidates", None)
        if candidates is None or not hasattr(route, "original_router"):
            yield route
            continue
        for candidate in candidates():
            if hasattr(candidate, "original_router"):  # an included router of its own
                yield from _flat((candidate,))
            elif getattr(candidate, "starlette_route", None) is not None:
                yield candidate.starlette_route  # a prefixed copy of a Starlette route or mount
            else:
                yield candidate


def _match(routes, scope):
    """(template or None, cacheable) for scope among routes."""
    Match, Mount, Host = _kinds()
    cacheable = True
    partial = None
    for route in _flat(routes):
        if isinstance(route, Host):
            cacheable = False
        try:
            match, child = route.matches(scope)
        except Exception:
            continue
        if match is Match.FULL:
            template, inner_cacheable = _template(route, scope, child)
            return template, cacheable and inner_cacheable
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    if partial is not None:
        template, inner_cacheable = _template(partial[0], scope, partial[1])
        return template, cacheable and inner_cacheable
    return None, cacheable


def _template(route, scope, child):
    """The template of a matched route; enters mounts and hosts."""
    _, Mount, Host = _kinds()
    if not isinstance(route, (Mount, Host)):
        path = getattr(route, "path", None)
        return (path if type(path) is str and path else None), True
    prefix = getattr(route, "path", "")  # a Host has none
    inner = getattr(route, "routes", None)
    if not inner:
        return prefix + "/{path}", True  # a mounted app without routes (static files)
    inner_scope = dict(scope)
    inner_scope.update(child)
    template, cacheable = _match(inner, inner_scope)
    return (prefix + template if template is not None else None), cacheable
