"""Worker pool: results, dynamic batching, cache, and that no request is ever lost."""

from __future__ import annotations

import threading
from concurrent.futures import wait

import numpy as np
import pytest

from wasm_torch.errors import DeadlineExceeded, InputError, MemoryLimitError, TrapError
from wasm_torch.serve.errors import ReplicaHung, Unavailable

from .fakes import FakeModel, TokenModel, expected, fixed_model


def x(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 4)).astype(np.float32)


def test_results_are_correct_and_batched_under_concurrency(make_pool):
    models: list[FakeModel] = []

    def factory() -> FakeModel:
        models.append(FakeModel())
        return models[-1]

    pool = make_pool(factory, faulty=False, max_batch_size=8, max_queue_delay_s=0.05)
    assert pool.batchable
    gate = threading.Event()
    inputs = [x(1 + i % 3, i) for i in range(60)]
    futures = []

    def client(i: int) -> None:
        gate.wait()
        futures.append((i, pool.submit({"x": inputs[i]})))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(60)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    wait([f for _, f in futures], timeout=10)
    for i, f in futures:
        np.testing.assert_allclose(f.result()["y"], expected(inputs[i]), rtol=1e-5, atol=1e-6)
    rows = [b for m in models for b in m.batches]
    assert sum(rows) == sum(len(a) for a in inputs)  # every row ran exactly once
    assert max(rows) <= 8  # never above max batch size
    assert len(rows) < 60  # some requests were batched together


def test_requests_with_different_trailing_shapes_are_not_mixed(make_pool):
    pool = make_pool(TokenModel, faulty=False, replicas=1, max_queue_delay_s=0.05)
    a = {"input_ids": np.ones((1, 5), np.int64), "attention_mask": np.ones((1, 5), np.int64)}
    b = {"input_ids": np.ones((2, 7), np.int64), "attention_mask": np.ones((2, 7), np.int64)}
    fa, fb = pool.submit(a), pool.submit(b)
    assert fa.result(5)["emb"][0, 0] == 5
    assert fb.result(5)["emb"].shape == (2, 3)
    assert fb.result(5)["emb"][1, 0] == 7


def test_fixed_shape_models_are_never_batched(make_pool):
    models = []
    pool = make_pool(lambda: models.append(fixed_model()) or models[-1], faulty=False, replicas=1)
    assert not pool.batchable
    fs = [pool.submit({"x": x(2, i)}) for i in range(10)]
    wait(fs, timeout=10)
    assert all(f.result()["y"].shape == (2, 3) for f in fs)
    assert set(models[0].batches) == {2}


def test_bad_input_is_a_client_error_and_the_worker_survives(make_pool):
    pool = make_pool(faulty=False, replicas=1)
    with pytest.raises(InputError):
        pool.infer({"x": np.ones((1, 5), np.float32)})
    assert pool.infer({"x": x(1)})["y"].shape == (1, 3)
    assert pool.replicas[0].breaker.state.name == "CLOSED"


def test_poisoned_request_in_a_batch_fails_alone(make_pool, plan):
    pool = make_pool(replicas=1, max_batch_size=16, max_queue_delay_s=0.05)
    plan.add("trap", when=lambda d: bool((d["x"] == 666).any()), times=None)
    bad = x(1)
    bad[0, 0] = 666
    fs = [pool.submit({"x": x(1, i)}) for i in range(5)] + [pool.submit({"x": bad})]
    fs += [pool.submit({"x": x(1, i)}) for i in range(5, 10)]
    wait(fs, timeout=10)
    errors = [f.exception() for f in fs]
    assert isinstance(errors[5], TrapError)
    assert [e for i, e in enumerate(errors) if i != 5] == [None] * 10


@pytest.mark.parametrize(
    "action,exc", [("trap", TrapError), ("deadline", DeadlineExceeded), ("oom", MemoryLimitError)]
)
def test_sandbox_faults_answer_the_request_and_keep_serving(make_pool, plan, action, exc):
    pool = make_pool(replicas=1)
    plan.add(action, seconds=0.01)
    with pytest.raises(exc):
        pool.infer({"x": x(1)})
    assert pool.infer({"x": x(1)})["y"].shape == (1, 3)


def test_trap_restarts_the_instance(make_pool, plan):
    pool = make_pool(replicas=1)
    plan.add("trap")
    with pytest.raises(TrapError):
        pool.infer({"x": x(1)})
    pool.infer({"x": x(1)})
    assert pool.replicas[0].restarts == 1


def test_killed_worker_is_replaced_and_its_requests_retried(make_pool, plan):
    pool = make_pool(replicas=2, max_queue_delay_s=0.0)
    plan.add("kill", replica=0)
    fs = [pool.submit({"x": x(1, i)}) for i in range(40)]
    wait(fs, timeout=20)
    assert all(f.done() for f in fs)
    assert [f.exception() for f in fs] == [None] * 40  # retried elsewhere: nothing lost
    assert ("kill", 0) in plan.fired
    assert pool.replicas[0].restarts == 1
    assert pool.replicas[0].death is not None
    assert pool.infer({"x": x(1)})["y"].shape == (1, 3)


def test_hung_worker_is_replaced_and_only_its_request_fails(make_pool, plan):
    pool = make_pool(replicas=2, hang_timeout_s=0.2, max_queue_delay_s=0.0)
    plan.add("hang", seconds=1.0, when=lambda d: bool((d["x"] == 777).any()), times=None)
    bad = x(1)
    bad[0, 0] = 777
    hung = pool.submit({"x": bad})
    fs = [pool.submit({"x": x(1, i)}) for i in range(30)]
    wait([hung, *fs], timeout=20)
    assert isinstance(hung.exception(), ReplicaHung)  # never retried: it may be the cause
    assert [f.exception() for f in fs] == [None] * 30
    # 1 restart if the culprit ran alone; 2 if it first hung a batch and then, alone, another replica
    assert sum(r.restarts for r in pool.replicas) in (1, 2)


def test_every_request_is_answered_when_all_replicas_are_gone(make_pool, plan):
    pool = make_pool(replicas=1, max_retries=0)
    plan.add("kill", times=None)
    fs = [pool.submit({"x": x(1, i)}) for i in range(5)]
    wait(fs, timeout=20)
    assert all(f.done() for f in fs)
    plan.clear()
    assert pool.infer({"x": x(1)})["y"].shape == (1, 3)


def test_queue_limit_sheds_load_with_unavailable(make_pool, plan):
    pool = make_pool(replicas=1, max_queue=2, max_batch_size=1)
    plan.add("slow", seconds=0.3)
    fs = [pool.submit({"x": x(1, i)}) for i in range(6)]
    wait(fs, timeout=10)
    errors = [f.exception() for f in fs]
    assert any(isinstance(e, Unavailable) for e in errors)
    assert any(e is None for e in errors)


def test_result_cache_hits(make_pool):
    models = []
    pool = make_pool(lambda: models.append(FakeModel()) or models[-1], faulty=False, cache_size=4)
    a = x(1)
    first = pool.infer({"x": a})
    second = pool.infer({"x": a})
    np.testing.assert_array_equal(first["y"], second["y"])
    assert pool.cache.hits == 1 and pool.cache.misses == 1
    assert sum(m.calls for m in models) == 1
    pool.clear_caches()
    pool.infer({"x": a})
    assert sum(m.calls for m in models) == 2


def test_replica_that_cannot_reload_hands_its_work_to_the_others(make_pool, plan):
    from wasm_torch.errors import ArtifactError

    made = []

    def factory() -> FakeModel:
        if len(made) >= 2:
            raise ArtifactError("artifact vanished")
        made.append(FakeModel())
        return made[-1]

    pool = make_pool(factory, replicas=2, balancer="round_robin", max_batch_size=1)
    plan.add("trap", replica=0)
    fs = [pool.submit({"x": x(1, i)}) for i in range(20)]
    wait(fs, timeout=10)
    errors = [f.exception() for f in fs]
    assert sum(isinstance(e, TrapError) for e in errors) == 1
    assert sum(e is None for e in errors) == 19
    assert pool.replicas[0].broken is not None and not pool.replicas[0].available
    assert pool.ready and pool.infer({"x": x(1)})["y"].shape == (1, 3)
