"""Route templates: which Starlette route ("/items/{item_id}") serves a request.

The router has not run yet when the middleware needs the template, so it is
found the way the router itself finds it: each route's `matches()`, a full
match first, else the first partial one (a 405). Mounts and hosts are entered
and their prefixes joined ("/api" + "/items/{item_id}"). Results are cached
per router, keyed by (scope type, method, path); a router whose route list
changes gets a fresh cache, and answers that depend on the Host header are
never cached.
"""

CACHE_MAX = 4096  # entries per router before the cache starts over

_caches = {}  # id(router) -> _Cache


class _Cache:
    __slots__ = ("router", "routes_id", "count", "entries")

    def __init__(self, router, routes):
        self.router = router  # keeps id(router) from being reused
        self.routes_id = id(routes)
        self.count = len(routes)
        self.entries = {}


def route_template(scope, app=None):
    """The template of the route that will serve scope, or None (e.g. a 404).

    app is the Starlette/FastAPI application (default: scope["app"]).
    """
    router = getattr(app if app is not None else scope.get("app"), "router", None)
    routes = getattr(router, "routes", None)
    if not routes:
        return None
    cache = _caches.get(id(router))
    if cache is None or cache.routes_id != id(routes) or cache.count != len(routes):
        cache = _caches[id(router)] = _Cache(router, routes)
    key = (scope["type"], scope.get("method"), scope["path"])
    try:
        return cache.entries[key]
    except KeyError:
        pass
    template, cacheable = _match(routes, scope)
    if cacheable:
        if len(cache.entries) >= CACHE_MAX:
            cache.entries.clear()
        cache.entries[key] = template
    return template


_starlette = None  # (Match, Mount, Host), imported on first use


def _kinds():
    global _starlette
    if _starlette is None:
        from starlette.routing import Host, Match, Mount

        _starlette = (Match, Mount, Host)
    return _starlette


def _match(routes, scope):
    """(template or None, cacheable) for scope among routes."""
    Match, Mount, Host = _kinds()
    cacheable = True
    partial = None
    for route in routes:
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
        return getattr(route, "path", None), True
    prefix = getattr(route, "path", "")  # a Host has none
    inner = getattr(route, "routes", None)
    if not inner:
        return prefix + "/{path}", True  # a mounted app without routes (static files)
    inner_scope = dict(scope)
    inner_scope.update(child)
    template, cacheable = _match(inner, inner_scope)
    return (prefix + template if template is not None else None), cacheable
