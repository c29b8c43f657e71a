"""Targets beyond our checkpoints, each stolen end to end with exact counts and bills: a
user's Python callable, a third-party embedding API through a declared adapter (a stand-in
server whose protocol is not ours), and published weights at 224 px."""

import base64
import io
import json
import os
import threading

import numpy as np
import pytest

import user_encoder
from conftest import tiny_steal_config
from stolen_jax import steal, targets
from stolen_jax.errors import ConfigError

httpx = pytest.importorskip("httpx")


def test_a_callable_target_is_stolen_with_every_query_counted(tmp_path):
  config = tiny_steal_config("callable:user_encoder:encode", eval_heldout=32)
  before = user_encoder.CALLS["images"]
  summary = steal.run(config, str(tmp_path))
  assert summary["queries"] == 32 == summary["queries_this_run"]
  held = summary["heldout"]
  assert held["stolen_cosine"] > held["random_cosine"] + 0.05, held
  # The held-out evaluation calls the target too (not a query), 32 images.
  assert user_encoder.CALLS["images"] - before == 32 + 32
  again = steal.run(config, str(tmp_path))
  assert again["restored"] and again["queries"] == 32


def test_a_callable_target_is_a_new_target_when_its_code_changes(tmp_path, monkeypatch):
  a = targets.open_callable("callable:user_encoder:encode")
  monkeypatch.setattr(targets.inspect, "getsource", lambda m: "def encode(): other code")
  b = targets.open_callable("callable:user_encoder:encode")
  assert a.meta["fingerprint"] != b.meta["fingerprint"]
  with pytest.raises(ConfigError, match="cannot import"):
    targets.open_callable("callable:user_encoder:nope")


# A stand-in for a third-party API: Clarifai-like JSON with base64 images, its own key header.
def stand_in_app(counter):
  from fastapi import FastAPI, Request
  from fastapi.responses import JSONResponse
  from PIL import Image
  app = FastAPI()

  @app.post("/v2/models/embed/outputs")
  async def outputs(request: Request):
    if request.headers.get("authorization") != "Key secret-123":
      return JSONResponse({"status": {"code": 11102, "description": "bad key"}}, status_code=401)
    body = await request.json()
    images = np.stack([np.asarray(Image.open(io.BytesIO(base64.b64decode(
        item["data"]["image"]["base64"]))).convert("RGB")) for item in body["inputs"]])
    counter["images"] += len(images)
    counter["requests"] += 1
    vectors = user_encoder.encode(images)
    return {"status": {"code": 10000},
            "outputs": [{"data": {"embeddings": [{"vector": v.tolist()}]}} for v in vectors]}

  @app.post("/embed")
  async def embed(request: Request):
    form = await request.form()
    images = np.stack([np.asarray(Image.open(io.BytesIO(await f.read())).convert("RGB"))
                       for _, f in form.multi_items()])
    counter["images"] += len(images)
    return {"embeddings": user_encoder.encode(images).tolist()}
  return app


@pytest.mark.parametrize("encoding", ["json_base64", "multipart"])
def test_a_third_party_api_is_stolen_through_an_adapter(tmp_path, monkeypatch, encoding):
  from test_serve import ThreadServer
  counter = {"images": 0, "requests": 0}
  monkeypatch.setenv("STANDIN_KEY", "secret-123")
  with ThreadServer(stand_in_app(counter)) as url:
    if encoding == "json_base64":
      spec = {"name": "stand-in", "url": url + "/v2/models/embed/outputs",
              "auth_header": "Authorization", "auth_prefix": "Key ", "auth_env": "STANDIN_KEY",
              "body": {"inputs": "$ITEMS"}, "item": {"data": {"image": {"base64": "$IMAGE"}}},
              "vectors": "outputs[*].data.embeddings[0].vector", "max_batch": 12,
              "price_per_1000": 1.2}
    else:
      spec = {"name": "stand-in", "url": url + "/embed", "encoding": "multipart",
              "vectors": "embeddings", "max_batch": 12, "price_per_1000": 1.2}
    path = tmp_path / "adapter.json"
    path.write_text(json.dumps(spec))
    config = tiny_steal_config(f"api:{path}", query_budget=40)
    summary = steal.run(config, str(tmp_path / "w"))
    assert summary["queries"] == 32 == counter["images"]
    assert summary["api_used"] == 32 and summary["api_cost"] == pytest.approx(32 * 1.2 / 1000)
    if encoding == "json_base64":
      assert counter["requests"] == 3  # Batches of at most max_batch=12.
    again = steal.run(config, str(tmp_path / "w"))
    assert again["restored"] and counter["images"] == 32
  np.testing.assert_allclose(
      np.load(tmp_path / "w" / "query" / os.listdir(tmp_path / "w" / "query")[0] /
              "surrogate.features.npy"),
      user_encoder.encode(steal.load_surrogate(config.steal, {}, config.seed).images), atol=1e-6)


def test_an_adapter_whose_vectors_are_elsewhere_says_where_it_looked(tmp_path, monkeypatch):
  from stolen_jax.eaas.adapter import AdapterService
  from test_serve import ThreadServer
  with ThreadServer(stand_in_app({"images": 0, "requests": 0})) as url:
    svc = AdapterService({"url": url + "/embed", "encoding": "multipart", "vectors": "data.vec"})
    with pytest.raises(Exception, match="no vectors at 'data.vec'"):
      svc.query(np.zeros((2, 8, 8, 3), np.uint8))
    assert svc.queries_used == 2  # Answered (200), so billed: counted as paid.


def test_imported_weights_are_a_target_at_their_own_resolution(mesh1):
  golden = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "golden")
  target = targets.open(f"import:torchvision_resnet18:{golden}/torchvision_resnet18.pth", mesh1,
                        width=4 / 64)
  assert target.meta["image_size"] == 224 and target.meta["feature_dim"] == 32
  small = np.random.default_rng(0).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
  f = target.features_fn(small)  # 32-px images, resized and cropped to 224 by the target.
  assert f.shape == (5, 32) and np.isfinite(f).all()
  again = targets.open(f"import:torchvision_resnet18:{golden}/torchvision_resnet18.pth", mesh1,
                       width=4 / 64)
  assert again.meta["fingerprint"] == target.meta["fingerprint"]
