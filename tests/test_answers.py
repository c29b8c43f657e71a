"""A target's answers are checked before they are trusted: a bad batch is paid, kept apart,
never trained on, blamed on the target, and asked again by a rerun; third-party bills are
counted honestly when an answer is lost; a view plan's budget is checked by arithmetic."""

import json
import os
import time

import numpy as np
import pytest

import faulty_encoder
import user_encoder
from conftest import tiny_steal_config
from stolen_jax import eaas, steal
from stolen_jax.eaas import answers
from stolen_jax.eaas.service import read_query_log
from stolen_jax.errors import UserError

httpx = pytest.importorskip("httpx")
TARGET = "callable:faulty_encoder:encode"


@pytest.fixture
def fault():
  def set_fault(name):
    faulty_encoder.MODE.update(fault=name, calls=0)
  yield set_fault
  set_fault(None)


def _log(tmp_path):
  (path,) = tmp_path.glob("query/*/queries.jsonl")
  return read_query_log(str(path))[0], path.parent


@pytest.mark.parametrize("kind, says", [
    ("nan", "the target answered NaN for 3 of 16 images of batch 2 (rows 16-31 of surrogate)"),
    ("dim", "the target answered 25-dimensional vectors where the first answers' are "
            "24-dimensional of batch 2"),
])
def test_a_bad_batch_is_paid_quarantined_and_a_rerun_asks_again(tmp_path, fault, kind, says):
  config = tiny_steal_config(TARGET, eval_heldout=0, query_budget=64)
  fault(kind)
  with pytest.raises(answers.TargetAnswerError) as e:
    steal.run(config, str(tmp_path))
  assert says in str(e.value) and "the stage will not use them" in str(e.value)
  paid, stage = _log(tmp_path)
  assert paid == 32  # Both batches were paid (the bad one too).
  (held,) = stage.glob("surrogate.quarantine/*.npz")
  with np.load(held) as q:
    assert list(q["indices"]) == list(range(16, 32)) and str(q["reason"]) in str(e.value)
  assert str(held) in str(e.value)
  # The cache holds only the good batch; the rerun pays for the bad one's 16 images again.
  fault(None)
  summary = steal.run(config, str(tmp_path))
  assert summary["queries"] == 48 and summary["queries_this_run"] == 16
  features = np.load(stage / "surrogate.features.npy")
  assert np.isfinite(features).all() and features.shape == (32, 24)


def test_a_rerun_beyond_the_budget_says_what_is_kept_apart(tmp_path, fault):
  config = tiny_steal_config(TARGET, eval_heldout=0, query_budget=40)
  fault("nan")
  with pytest.raises(answers.TargetAnswerError):
    steal.run(config, str(tmp_path))
  fault(None)
  with pytest.raises(eaas.QueryBudgetExceeded, match=r"needs 16 more queries .* 32 already paid\) "
                     r"but steal.query_budget=40; nothing was queried. 1 paid batches the "
                     r"target answered wrongly are kept apart in .*surrogate.quarantine"):
    steal.run(config, str(tmp_path))


def test_non_finite_answers_cached_before_checks_are_asked_again(tmp_path):
  # A cache written by an older version, with NaN rows stored as answers.
  images = np.random.default_rng(0).integers(0, 255, (8, 16, 16, 3), dtype=np.uint8)
  cache = eaas.FeatureCache(str(tmp_path), "surrogate", 8, "imgs")
  bad = user_encoder.encode(images)
  bad[2] = np.nan
  cache.store(np.arange(8), bad)
  service = eaas.QueryService(user_encoder.encode)
  out = eaas.query_with_cache(service, images, cache)
  assert service.queries_used == 1 and np.isfinite(out).all()
  assert len(answers.quarantined(cache)) == 1


@pytest.mark.parametrize("kind, says", [
    ("raise", "the target faulty_encoder.encode raised RuntimeError on a batch of 16 images: "
              "CUDA out of memory"),
    ("strings", "the target faulty_encoder.encode returned list of dtype <U1"),
])
def test_a_callable_that_raises_or_returns_non_numbers_is_one_error(tmp_path, fault, kind, says):
  fault(kind)
  with pytest.raises(answers.TargetAnswerError, match=says.replace("(", r"\(")):
    steal.run(tiny_steal_config(TARGET, eval_heldout=0), str(tmp_path))


# A third-party API that is slow, bills every request it receives, and deduplicates requests
# by an idempotency key when one is sent.
def slow_api(bill, delay_s):
  from fastapi import FastAPI, Request
  app = FastAPI()

  @app.post("/embed")
  async def embed(request: Request):
    import asyncio
    body = await request.json()
    key = request.headers.get("idempotency-key")
    n = len(body["images"])
    if key is None or key not in bill["keys"]:
      bill["billed"] += n
      if key:
        bill["keys"].add(key)
      await asyncio.sleep(delay_s)  # Billed, then too slow for the client's timeout.
    return {"vectors": [[0.5] * 4] * n, "nan": None}
  return app


@pytest.mark.parametrize("declared, billed, maybe, paid", [
    ({}, 4, 4, 0),  # Not retried: one bill, counted as maybe billed.
    ({"retry_on_timeout": True, "retries": 2}, 12, 12, 0),  # Three tries, three bills.
    ({"idempotency_header": "Idempotency-Key", "retries": 2}, 4, 0, 4),  # Deduplicated.
])
def test_a_lost_answer_is_counted_as_maybe_billed(tmp_path, declared, billed, maybe, paid):
  from stolen_jax.eaas.adapter import AdapterService
  from test_serve import ThreadServer
  bill = {"billed": 0, "keys": set()}
  with ThreadServer(slow_api(bill, delay_s=1.0)) as url:
    svc = AdapterService({"url": url + "/embed", "vectors": "vectors", "timeout_s": 0.4,
                          "body": {"images": "$ITEMS"}, **declared}, backoff_s=0.01)
    svc.attach_log(str(tmp_path / "api_queries.jsonl"))
    images = np.zeros((4, 8, 8, 3), np.uint8)
    if paid:  # The retry is answered from the API's record of the key, billed once.
      with pytest.MonkeyPatch.context() as m:
        m.setattr(time, "sleep", lambda s: None)
        assert svc.query(images).shape == (4, 4)
    else:
      with pytest.raises(UserError, match="may have billed these 4 queries" if not declared
                         else "did not answer after 3 tries"):
        svc.query(images)
    time.sleep(1.2 if not paid else 0)
    assert bill["billed"] == billed
    assert svc.maybe_billed == maybe and svc.queries_used == paid
    assert svc.account()["maybe_billed"] == maybe
  # The count survives the process: a new service reads it from the log.
  again = AdapterService({"url": "http://127.0.0.1:9/embed", "vectors": "vectors"})
  again.attach_log(str(tmp_path / "api_queries.jsonl"))
  assert again.maybe_billed == maybe


def test_the_paid_line_says_what_may_have_been_billed():
  from stolen_jax.jobs import paid_line
  line = paid_line({"queries": 32, "api": "api:x.json", "api_cost": 0.0384,
                    "api_maybe_billed": 16}, 1.2)
  assert line == ("paid 32 queries to api:x.json ($0.0384); 16 more may have been billed "
                  "(requests sent that got no answer)")


def test_a_view_plan_beyond_the_budget_is_refused_by_arithmetic_at_once(tmp_path):
  config = tiny_steal_config("callable:user_encoder:encode", attack="contsteal",
                             query_budget=2000)
  config.steal.contsteal.views = 100000
  t0 = time.perf_counter()
  with pytest.raises(eaas.QueryBudgetExceeded,
                     match=r"needs 32 images × 100000 views = 3200000 queries, more than "
                           r"steal.query_budget=2000; nothing was queried"):
    steal.run(config, str(tmp_path))
  assert time.perf_counter() - t0 < 5
  assert not list(tmp_path.glob("query/*/queries.jsonl"))


def test_a_view_plan_through_http_is_refused_with_the_accounts_figures(tiny_target, tmp_path):
  from test_attacks import _attack_config
  from test_serve import ThreadServer, target_api
  app, ledger, _ = target_api(tiny_target, tmp_path)
  key = ledger.add_key("small", budget=40, price_per_1000=1.2)
  with ThreadServer(app) as url:
    with pytest.raises(eaas.QueryBudgetExceeded,
                       match=r"needs 96 more queries \(3·\|D\| = 96 in all, 0 cached\) but the "
                             r"API's account has 40 left; nothing was queried"):
      steal.run(_attack_config(url, "rda", api_key=key, epochs=1), str(tmp_path / "w"))
  assert ledger.authenticate(key).used == 0
