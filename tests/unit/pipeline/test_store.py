"""The store: atomic publish with the marker last, locks, invalidation."""
import multiprocessing as mp
import time

from llmpipe.pipeline.store import MARKER, Store


def test_publish_is_atomic_and_marked_last(tmp_path):
    store = Store(tmp_path)
    e = store.entry("train", "abc")
    store.prepare(e)
    (e.staging / "weights.bin").write_bytes(b"x" * 10)
    assert not e.complete() and not e.path.exists()
    store.publish(e, {"metrics": {"loss": 1.0}})
    assert e.complete() and (e.path / "weights.bin").exists()
    assert e.info()["metrics"]["loss"] == 1.0
    assert not e.work.exists()


def test_unmarked_entry_is_not_complete_and_is_cleared(tmp_path):
    store = Store(tmp_path)
    e = store.entry("train", "def")
    e.path.mkdir(parents=True)
    (e.path / "half.bin").write_bytes(b"partial")
    assert not e.complete()
    store.prepare(e)
    assert not e.path.exists() and e.staging.is_dir()


def test_prepare_keeps_checkpoints_in_work(tmp_path):
    store = Store(tmp_path)
    e = store.entry("train", "ghi")
    (e.work / "checkpoints" / "checkpoint-5").mkdir(parents=True)
    store.prepare(e)
    assert (e.work / "checkpoints" / "checkpoint-5").is_dir()


def test_invalidate_removes_marker_first(tmp_path):
    store = Store(tmp_path)
    e = store.entry("load", "jkl")
    store.prepare(e)
    store.publish(e, {})
    store.invalidate(e)
    assert not e.path.exists() and not e.complete()


def _hold(root, started, seconds):
    store = Store(root)
    e = store.entry("train", "lockme")
    with store.locked(e):
        started.set()
        time.sleep(seconds)


def test_lock_excludes_a_second_process(tmp_path):
    started = mp.Event()
    p = mp.Process(target=_hold, args=(str(tmp_path), started, 1.5))
    p.start()
    assert started.wait(20)
    store = Store(tmp_path)
    waited = []
    t0 = time.time()
    with store.locked(store.entry("train", "lockme"), on_wait=lambda: waited.append(True)):
        elapsed = time.time() - t0
    p.join()
    assert waited and elapsed > 0.3


def test_unwritable_root_is_reported(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    msg = Store(blocker / "cache").check_writable()   # fails even for root: a file is in the way
    assert msg and "cannot write" in msg and str(blocker) in msg


def _wait_for(root, waiting_now, done):
    store = Store(root)
    with store.locked(store.entry("train", "lockme"), on_wait=waiting_now.set):
        done.set()


def test_the_holder_counts_the_jobs_waiting_for_it(tmp_path):
    """A job waiting for a stage leaves a marker while it waits: the holder sees one waiter, then none."""
    store = Store(tmp_path)
    entry = store.entry("train", "lockme")
    locks = tmp_path / "locks"
    locks.mkdir()
    # a marker of a process that died and one of another machine (a shared store) are not counted
    (locks / "train-lockme.lock.waiting-otherhost-1").touch()
    dead = mp.Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    (locks / f"train-lockme.lock.waiting-{_host()}-{dead.pid}").touch()
    waiting_now, done = mp.Event(), mp.Event()
    with store.locked(entry):
        assert store.waiting(entry) == 0
        p = mp.Process(target=_wait_for, args=(str(tmp_path), waiting_now, done))
        p.start()
        assert waiting_now.wait(20)
        assert store.waiting(entry) == 1
        assert not done.is_set()
    p.join(20)
    assert done.is_set() and store.waiting(entry) == 0
    assert not list(locks.glob(f"*waiting-{_host()}-{p.pid}"))   # the waiter removed its marker


def _host():
    from llmpipe.processes import _HOST

    return _HOST
