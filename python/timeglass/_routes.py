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

template() starts with the common case (no mount, a route object left in
the scope; _speedups.c does the same in C), and after_routing() covers the
rest. A 404 of the application's own router is known from the scope too
(the router ran, no route set an endpoint).

When the scope does not tell (no route object in it: a plain Starlette
route under Starlette < 1.0 or in a FastAPI 0.16x router, a 404 inside a
mount, a response sent before routing), the route is found the way the
router finds it: each route's `matches()`, a full match first, else the
first partial one (a 405), mounts and hosts entered, FastAPI 0.16x included
routers flattened into their prefixed routes (route_template). Websocket
handshakes are named that way, before the application runs.

Results of matching are cached per application, keyed by (scope type,
method, path), and mount prefixes by the concrete part of the path the
mounts took; an application whose route list changes gets fresh caches,
and answers that a Host route had a say in are cached per Host header.
"""

CACHE_MAX = 4096  # entries per application and kind before the cache starts over

_caches = {}  # id(app) -> _Cache

_FASTAPI = "fastapi"  # FastAPI 0.16x's own scope entry
_EFFECTIVE = "effective_route_context"
_MISSING = object()
_BY_HOST = object()  # cached: the answer depends on the Host header, see the (key, host) entry


class _Cache:
    __slots__ = ("app", "router", "routes", "count", "entries", "prefixes")

    def __init__(self, app, router, routes):
        self.app = app  # keeps id(app) from being reused
        self.router = router
        self.routes = routes
        self.count = len(routes)
        self.entries = {}  # (type, method, path) -> template or None
        self.prefixes = {}  # concrete mount part ("/tenants/acme") -> template ("/tenants/{tenant}")

    def valid(self):
        """False once the router's route list has changed."""
        routes = self.routes
        return self.router.routes is routes and len(routes) == self.count


def _cache_of(app):
    """The caches of the routes of app (a Starlette application), or None
    when it has none. They start over when its route list changes."""
    cache = _caches.get(id(app))
    if cache is not None and cache.valid():
        return cache
    router = getattr(app, "router", None)
    routes = getattr(router, "routes", None)
    if not routes:
        return None
    cache = _caches[id(app)] = _Cache(app, router, routes)
    return cache


def _remember(entries, key, scope, value, by_host):
    """Caches value for key, per Host header when a Host route had a say
    (then entries[key] is _BY_HOST)."""
    if len(entries) >= CACHE_MAX:
        entries.clear()
    if by_host:
        entries[key] = _BY_HOST
        entries[(key, _host(scope))] = value
    else:
        entries[key] = value


def _host(scope):
    for name, value in scope.get("headers") or ():
        if name == b"host":
            return value
    return None


_FAST_ONLY = object()


def template(scope, path0, root0, app):
    """The template of the route that served scope, or None (no route): what
    the middleware names a request with (see after_routing for the
    arguments).

    The first part is the common case, where the scope gives the template
    outright: the request is not inside a mount (root_path is still root0)
    and the scope holds the route that served it. It is fast_route() of
    _speedups.c (both must give the same answers), which then calls
    after_routing() for the rest.
    """
    route = scope.get("route")
    if route is not None and scope.get("root_path", "") == root0:
        fastapi = scope.get(_FASTAPI)
        context = fastapi.get(_EFFECTIVE) if type(fastapi) is dict else None
        if context is None:
            path = getattr(route, "path", None)
        elif getattr(context, "original_route", None) is route:
            path = getattr(context, "path", None)
        else:
            path = None
        if type(path) is str and path:
            return path
    if path0 is _FAST_ONLY:
        return None
    return after_routing(scope, path0, root0, app)


def fast_template(scope, root0):
    """The template when the scope gives it outright (the first part of
    template()), else None."""
    return template(scope, _FAST_ONLY, root0, None)


def after_routing(scope, path0, root0, app):
    """The template of the route that served scope, or None (no route).

    scope is the request's scope after routing (or at any time: what the
    routers have not filled in yet is found by matching); path0 and root0
    are its path and root_path when it entered app, the Starlette/FastAPI
    application whose routes apply (default: scope["app"]).
    """
    leaf = _leaf(scope)
    root = scope.get("root_path", "")
    if leaf is not None:
        if root == root0:
            return leaf
        if root.startswith(root0):
            part = root[len(root0):]
            # The cached mount prefix first, inline: every request of a
            # mounted application comes this way.
            cache = _caches.get(id(app if app is not None else scope.get("app")))
            prefix = cache.prefixes.get(part, _MISSING) if cache is not None and cache.valid() else _MISSING
            if prefix is _MISSING or prefix is _BY_HOST:
                prefix = _mount_prefix(scope, path0, root0, app, part)
            if prefix is not None:
                return prefix + leaf
    elif root == root0 and "router" in scope and "endpoint" not in scope:
        return None  # the application's router ran and found no route
    return route_template(_view(scope, path0, root0), app)


def _view(scope, path0, root0):
    """scope as it was when it entered the application."""
    view = dict(scope)
    view["path"] = path0
    view["root_path"] = root0
    view.pop("path_params", None)
    return view


def _leaf(scope):
    """The template of the innermost route from the scope, below the last
    mount, or None when the scope does not hold it."""
    route = scope.get("route")
    fastapi = scope.get(_FASTAPI)
    if type(fastapi) is dict:
        context = fastapi.get(_EFFECTIVE)
        if context is not None:
            if route is not None and getattr(context, "original_route", None) is route:
                path = getattr(context, "path", None)  # a FastAPI route of an included router
                return path if type(path) is str and path else None
            # A Starlette route or websocket route of an included router:
            # FastAPI matched a prefixed copy of it. (A context left by an
            # outer level that chose a mount holds a Mount: no answer.)
            copy = getattr(context, "starlette_route", None)
            if copy is not None and not _inner(copy) and (route is None or route is copy or _inner(route)):
                path = getattr(copy, "path", None)
                return path if type(path) is str and path else None
    if route is None:
        return None
    inner = _inner_types.get(type(route))
    if inner or (inner is None and _inner(route)):
        return None
    path = getattr(route, "path", None)
    return path if type(path) is str and path else None


_inner_types = {}  # type -> whether its routes lead to more routes


def _inner(route):
    """True for routes that lead to more routes (mounts, hosts, included routers)."""
    kind = type(route)
    inner = _inner_types.get(kind)
    if inner is None:
        _, Mount, Host = _kinds()
        inner = _inner_types[kind] = issubclass(kind, (Mount, Host)) or hasattr(route, "original_router")
    return inner


def _mount_prefix(scope, path0, root0, app, part):
    """The template of the mounts that took `part` of the path ("/tenants/acme"
    -> "/tenants/{tenant}"), or None when they cannot be told."""
    cache = _cache_of(app if app is not None else scope.get("app"))
    if cache is None:
        return None
    prefix = cache.prefixes.get(part, _MISSING)
    if prefix is _BY_HOST:
        prefix = cache.prefixes.get((part, _host(scope)), _MISSING)
    if prefix is not _MISSING:
        return prefix
    try:
        prefix, by_host = _mounts(cache.router.routes, _view(scope, path0, root0), part)
    except Exception:
        return None
    _remember(cache.prefixes, part, scope, prefix, by_host)
    return prefix


def _mounts(routes, scope, part):
    """(template of the mounts among routes that take `part`, by_host).

    The router takes the first mount that matches; any path under `part`
    goes to the same mounts (a mount matches on its own segments only), so
    the answer holds for every request whose mounts took `part`, unless a
    Host route (the Host header) had a say: by_host."""
    Match, Mount, Host = _kinds()
    root = scope.get("root_path", "")
    by_host = False
    for route in _flat(routes, mounts=True):
        if isinstance(route, Host):
            by_host = True
            match, child = route.matches(scope)
            if match is Match.FULL:
                inner = dict(scope)
                inner.update(child)
                return _mounts(route.routes, inner, part)[0], True
            continue
        match, child = route.matches(scope)
        if match is not Match.FULL:
            continue
        took = child.get("root_path", root)[len(root):]
        if took == part:
            return route.path, by_host
        if not took or not part.startswith(took):
            return None, by_host
        inner = dict(scope)
        inner.update(child)
        prefix, inner_by_host = _mounts(route.routes, inner, part[len(took):])
        return (route.path + prefix if prefix is not None else None), by_host or inner_by_host
    return None, by_host


def route_template(scope, app=None):
    """The template of the route that will serve scope, or None (e.g. a 404),
    found by matching the routes (the router need not have run).

    app is the Starlette/FastAPI application (default: scope["app"]).
    """
    cache = _cache_of(app if app is not None else scope.get("app"))
    if cache is None:
        return None
    key = (scope["type"], scope.get("method"), scope["path"])
    template = cache.entries.get(key, _MISSING)
    if template is _BY_HOST:
        template = cache.entries.get((key, _host(scope)), _MISSING)
    if template is not _MISSING:
        return template
    template, by_host = _match(cache.router.routes, scope)
    _remember(cache.entries, key, scope, template, by_host)
    return template


_starlette = None  # (Match, Mount, Host), imported on first use


def _kinds():
    global _starlette
    if _starlette is None:
        from starlette.routing import Host, Match, Mount

        _starlette = (Match, Mount, Host)
    return _starlette


_flats = {}  # id(routes) -> (routes, len(routes), versions, flat list, its mounts and hosts)
_included_types = {}  # type -> whether it is a FastAPI 0.16x included router


def _is_included(route):
    kind = type(route)
    included = _included_types.get(kind)
    if included is None:
        included = _included_types[kind] = hasattr(route, "original_router") and \
            hasattr(route, "effective_candidates")
    return included


def _flat(routes, mounts=False):
    """routes in the order the router tries them, FastAPI 0.16x included
    routers replaced by the routes they hold, with their prefixes: route
    objects, or FastAPI route contexts (`matches()` and a prefixed `path`).
    mounts: only the mounts and hosts among them.

    Kept per route list while it does not change (nor, under FastAPI 0.16x,
    the routers included in it)."""
    entry = _flats.get(id(routes))
    if entry is not None and entry[0] is routes and entry[1] == len(routes) and \
            (entry[2] is None or entry[2] == _versions(routes)):
        return entry[4] if mounts else entry[3]
    _, Mount, Host = _kinds()
    included = [r for r in routes if _is_included(r)]
    flat = list(_flatten(routes)) if included else list(routes)
    only_mounts = [r for r in flat if isinstance(r, (Mount, Host))]
    if len(_flats) >= CACHE_MAX:
        _flats.clear()
    _flats[id(routes)] = (routes, len(routes), _versions(routes) if included else None, flat, only_mounts)
    return only_mounts if mounts else flat


def _versions(routes):
    """The route versions of the routers included in routes (FastAPI 0.16x)."""
    try:
        return tuple(r.original_router._get_routes_version() for r in routes if _is_included(r))
    except Exception:
        return object()  # equal to nothing: never reused


def _flatten(routes):
    for route in routes:
        if not _is_included(route):
            yield route
            continue
        for candidate in route.effective_candidates():
            if _is_included(candidate):  # an included router of its own
                yield from _flatten((candidate,))
            elif getattr(candidate, "starlette_route", None) is not None:
                yield candidate.starlette_route  # a prefixed copy of a Starlette route or mount
            else:
                yield candidate


def _match(routes, scope):
    """(template or None, by_host: whether a Host route had a say) for
    scope among routes."""
    Match, Mount, Host = _kinds()
    by_host = False
    partial = None
    for route in _flat(routes):
        if isinstance(route, Host):
            by_host = True
        try:
            match, child = route.matches(scope)
        except Exception:
            continue
        if match is Match.FULL:
            template, inner_by_host = _template(route, scope, child)
            return template, by_host or inner_by_host
        if match is Match.PARTIAL and partial is None:
            partial = (route, child)
    if partial is not None:
        template, inner_by_host = _template(partial[0], scope, partial[1])
        return template, by_host or inner_by_host
    return None, by_host


def _template(route, scope, child):
    """(template, by_host) of a matched route; enters mounts and hosts."""
    _, Mount, Host = _kinds()
    if not isinstance(route, (Mount, Host)):
        path = getattr(route, "path", None)
        return (path if type(path) is str and path else None), False
    prefix = getattr(route, "path", "")  # a Host has none
    inner = getattr(route, "routes", None)
    if not inner:
        return prefix + "/{path}", False  # a mounted app without routes (static files)
    inner_scope = dict(scope)
    inner_scope.update(child)
    template, by_host = _match(inner, inner_scope)
    return (prefix + template if template is not None else None), by_host
