"""An inventory service laid out like a real project: versioned API routers
with prefixes and dependencies (api.py), a session per request (db.py),
mounted sub-applications (subapps.py) and the application factory (main.py).

The tests name every kind of route a project has (nested router prefixes,
"" paths, convertors, mounts with and without path parameters, websockets,
plain Starlette routes, hosts) and check the template TimeGlass stores for
each. It uses only what FastAPI 0.92 through 0.16x all accept.
"""
