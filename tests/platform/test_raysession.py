"""A local Ray sized for a laptop: the job's environment defaults, and a user's own values winning."""
from __future__ import annotations

import os

from radisim.platform.config import RayConfig
from radisim.platform.raysession import LOCAL_ENV, MALLOC_ENV, owns_local_ray, ray_session


def test_local_session_lists_parquet_footers_with_one_actor_and_keeps_the_users_settings(monkeypatch):
    import ray
    from ray.data._internal.datasource_v2.formats.parquet.footer_file_indexer import FooterFileIndexer

    for key in LOCAL_ENV:
        monkeypatch.delenv(key, raising=False)  # restored after the test, whatever the session sets
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1")
    if ray.is_initialized():
        ray.shutdown()
    with ray_session(RayConfig(num_cpus=2, object_store_mb=128, include_dashboard=False)):
        assert FooterFileIndexer(ignore_missing_paths=False)._num_actors == 1  # Ray's default is a pool of 32 actor processes
        assert os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.1"
        assert os.environ["RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"] == "0"
        # glibc reads its malloc settings at process start: the workers' environment must hold them from exec on
        def exec_environment() -> dict[str, str]:  # what the process was started with, not set since
            with open(f"/proc/{os.getpid()}/environ", "rb") as f:
                pairs = (item.decode().partition("=") for item in f.read().split(b"\0") if item)
                return {k: v for k, _, v in pairs}

        worker_env = ray.get(ray.remote(num_cpus=0.1)(exec_environment).remote())
        assert {k: worker_env.get(k) for k in MALLOC_ENV} == MALLOC_ENV
        assert owns_local_ray()
    assert not ray.is_initialized() and not owns_local_ray()


def test_local_session_starts_its_own_ray_beside_the_machines_latest_ray_start_cluster(monkeypatch):
    """`ray.init()` with no address joins the cluster that the machine's last `ray start` recorded (still
    recorded after that head crashed), where passing num_cpus is an error: a job with no address set must
    start its own Ray instead, as documented."""
    import shutil
    import tempfile

    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray_tmp = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths live under it
    try:
        os.makedirs(os.path.join(ray_tmp, "ray"))
        with open(os.path.join(ray_tmp, "ray", "ray_current_cluster"), "w") as f:
            f.write("127.0.0.1:1")  # what a crashed `ray start --head` leaves behind
        monkeypatch.setenv("RAY_TMPDIR", ray_tmp)
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
        for key in LOCAL_ENV:
            monkeypatch.delenv(key, raising=False)
        with ray_session(RayConfig(num_cpus=1, object_store_mb=100, include_dashboard=False)):
            assert owns_local_ray() and ray.cluster_resources()["CPU"] == 1
            assert ray.get_runtime_context().gcs_address != "127.0.0.1:1"
        assert not ray.is_initialized()
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_fits_on_an_owned_local_ray_leave_out_the_placement_group_cleaner(monkeypatch):
    """A detached actor per fit polling the State API every second, for a Ray that dies with the job."""
    import ray.train
    from ray.train.torch import TorchTrainer
    from ray.train.v2._internal.callbacks.placement_group_callback import PlacementGroupCleanerCallback

    from radisim.platform import raysession
    from radisim.platform.train.runner import trainer_class

    def callbacks(cls) -> list[type]:
        trainer = cls(lambda: None, scaling_config=ray.train.ScalingConfig(num_workers=1))
        return [type(cb) for cb in trainer._create_default_callbacks()]

    assert trainer_class() is TorchTrainer  # a cluster, or a Tune trial inside one
    ray_callbacks = callbacks(TorchTrainer)
    assert PlacementGroupCleanerCallback in ray_callbacks
    monkeypatch.setattr(raysession, "_owns_local_ray", True)
    local = trainer_class()
    assert issubclass(local, TorchTrainer)
    assert callbacks(local) == [cb for cb in ray_callbacks if cb is not PlacementGroupCleanerCallback]


def test_data_config_splits_only_among_several_workers_with_ray_trains_default_options_and_no_warning():
    import warnings

    from ray.data import DataContext

    from radisim.platform.raysession import configure_data_context
    from radisim.platform.train.runner import data_config

    ctx = DataContext.get_current()
    saved = ctx.execution_options.preserve_order
    try:
        for deterministic in (True, False):
            configure_data_context(deterministic)
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # Ray 2.60's own default would raise RayDeprecationWarning here
                one, several = data_config(1), data_config(2)
            assert one._datasets_to_split == [] and several._datasets_to_split == "all"
            for options in (one._get_user_execution_options("train"), several._get_user_execution_options("train")):
                assert options.preserve_order is deterministic
                assert options.resource_limits == ctx.execution_options.resource_limits
    finally:
        ctx.execution_options.preserve_order = saved


def test_train_workers_share_the_hosts_cores_on_a_local_ray_and_take_their_reservation_on_a_cluster(monkeypatch):
    from radisim.platform.config import load_job_config
    from radisim.platform.train.runner import phase_loop_config, worker_threads

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)

    def threads(*sets, trials=1):
        return worker_threads(load_job_config(None, list(sets)), trials)

    assert threads() == 8                                   # one local worker: every core
    assert threads("train.num_workers=2") == 4
    assert threads("train.num_workers=2", trials=2) == 2    # two concurrent Tune trials of 2 workers
    assert threads("train.num_workers=4", trials=4) == 1    # never below one
    assert threads("train.cpus_per_worker=2", "train.num_workers=8") == 2  # never below the reservation
    assert threads("train.torch_threads=3") == 3            # the user's value wins
    assert threads("ray.address=ray://head:10001", "train.cpus_per_worker=1.5") == 2
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert threads() == 1
    cfg = load_job_config(None, ["train.cpus_per_worker=6"])
    assert phase_loop_config(cfg, 0, None, "sqlite://", None, "run", 0)["torch_threads"] == 6
