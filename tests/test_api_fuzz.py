"""The API fuzzed from its own OpenAPI document (schemathesis, in-process ASGI, no network).

Every operation gets bounded, derandomized examples of headers and bodies the schema allows
and breaks; a share of the bodies are real ``.npy`` arrays of random dtypes and shapes so the
deeper checks (dtype, shape, budget, billing) are reached. Asserted for every response: no
5xx, a status and headers the document declares, and no bill without an answer (the account's
``used`` moves only on a 200 that says ``X-Replayed: 0``, by exactly its rows).
"""

import io
import sys

import numpy as np
import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (content_type_conformance,  # noqa: E402
                                               response_headers_conformance,
                                               status_code_conformance)

from fake_api_server import fake_features  # noqa: E402
from stolen_jax.eaas import ledger as ledger_lib, server  # noqa: E402

EXAMPLES = {"GET": 60, "POST": 400}  # Derandomized: every run tries the same inputs.
MOSTLY = st.integers(0, 4).map(bool)  # True four times in five.


@schemathesis.serializer("application/x-npy")
def _npy_body(ctx, value):
  """A generated ``format: binary`` body goes out as its raw bytes."""
  data = getattr(value, "data", value)
  if isinstance(data, str):
    data = data.encode("utf-8", "surrogatepass")
  return bytes(data) if data is not None else b""


def _npy(array) -> bytes:
  buf = io.BytesIO()
  np.save(buf, array, allow_pickle=False)
  return buf.getvalue()


ARRAYS = st.builds(
    lambda dtype, shape: np.zeros(shape, dtype),
    st.sampled_from([np.uint8, np.uint8, np.uint8, np.float32, np.int64, np.bool_]),
    st.one_of(st.integers(1, 20).map(lambda n: (n, 4, 4, 3)), st.just((0, 4, 4, 3)),
              st.lists(st.integers(0, 5), min_size=0, max_size=5).map(tuple)))


@pytest.fixture(scope="module")
def api(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("fuzz") / "ledger.sqlite")
  ledger = ledger_lib.Ledger(path)
  key = ledger.add_key("fuzz", budget=20)  # Small: 402s are reached too.
  app = server.make_app(fake_features, ledger, image_size=4, feature_dim=6, batch_window_ms=0,
                        max_batch=16, max_body_bytes=20000, json_max_images=4,
                        max_image_pixels=64 * 64, max_request_pixels=4 * 64 * 64)
  return schemathesis.openapi.from_asgi("/openapi.json", app), ledger, key


@pytest.mark.parametrize("method, path", [("GET", "/healthz"), ("GET", "/v1/model"),
                                          ("GET", "/v1/account"), ("POST", "/v1/features")])
def test_the_api_keeps_its_documented_contract_under_fuzzing(api, method, path):
  schema, ledger, key = api
  operation = schema[path][method]

  @settings(max_examples=EXAMPLES[method], deadline=None, derandomize=True, database=None,
            suppress_health_check=list(HealthCheck))
  @given(case=operation.as_strategy(), authorised=MOSTLY, real_body=MOSTLY, array=ARRAYS)
  def run(case, authorised, real_body, array):
    headers = {"Authorization": f"Bearer {key}"} if authorised else {}
    if real_body and method == "POST" and (case.media_type or "").endswith("x-npy"):
      case.body = _npy(array)
    used = ledger.authenticate(key).used
    response = case.call(headers=headers)
    case.validate_response(response, checks=[not_a_server_error, status_code_conformance,
                                              content_type_conformance,
                                              response_headers_conformance], headers=headers)
    billed = ledger.authenticate(key).used - used
    if method == "POST" and response.status_code == 200 and \
        response.headers.get("x-replayed", [""])[0] == "0":
      rows = (len(response.json()["features"]) if "json" in
              response.headers.get("content-type", [""])[0]
              else len(np.load(io.BytesIO(response.content), allow_pickle=False)))
      assert billed == rows, (billed, rows)
    else:
      assert billed == 0, f"billed {billed} for HTTP {response.status_code}"

  run()
  assert ledger.billed_queries(ledger.authenticate(key)) == ledger.authenticate(key).used


if __name__ == "__main__":
  sys.exit(pytest.main([__file__, "-q"]))
