"""A fixed workload: enough requests a route for the rank test to see a
real slowdown under load."""

N = int(__import__("os").environ.get("TIMING_REQUESTS", "60"))


def test_cpu(get):
    for _ in range(N):
        assert get("/cpu") == 200


def test_io(get):
    for _ in range(N):
        assert get("/io") == 200
