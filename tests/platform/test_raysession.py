"""A local Ray sized for a laptop: the job's environment defaults, and a user's own values winning."""
from __future__ import annotations

import os

from radisim.platform.config import RayConfig
from radisim.platform.raysession import LOCAL_ENV, ray_session


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
    assert not ray.is_initialized()
