def test_smoke(server, user):
    r = user.api.post("/category", json={"name": "c1"})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    r = user.api.get(f"/category/{cid}")
    assert r.status_code == 200, r.text
    print(r.json(), r.headers)
    r = user.api.get("/category", params={"filter": '{"name":"c1"}'})
    print(r.json())
    assert r.json()["count"] == 1
