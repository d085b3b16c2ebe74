"""The sample application through Starlette's TestClient (in-process).

The workload is fixed, so the CI tests know its figures: 10 item reads,
5 listings, 3 creations and 2 invalid ones (422), 2 missing items (404),
8 slow requests and 1 report.
"""


def test_get_item(client):
    for i in range(10):
        r = client.get("/items/%d" % (i % 5 + 1))
        assert r.status_code == 200
        assert r.json()["id"] == i % 5 + 1


def test_list_items(client):
    for _ in range(5):
        r = client.get("/items")
        assert r.status_code == 200
        assert len(r.json()) >= 5


def test_create_item(client):
    for i in range(3):
        assert client.post("/items", json={"name": "new%d" % i, "price": 2.5}).status_code == 201
    for bad in ({"name": "no price"}, {"name": "x", "price": "not a number"}):
        assert client.post("/items", json=bad).status_code == 422


def test_missing_item(client):
    for _ in range(2):
        assert client.get("/items/999").status_code == 404


def test_slow(client):
    for _ in range(8):
        assert client.get("/slow").status_code == 200


def test_report(client):
    r = client.get("/report")
    # the suite stays green when the report backend fails: TimeGlass must see it
    assert r.status_code in (200, 500)
