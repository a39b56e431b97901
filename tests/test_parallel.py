"""How `OCJAX_*` variables become `jax.distributed.initialize` arguments."""

import pytest

from ocjax.parallel import distributed_arguments


def test_single_process_unless_asked():
    assert distributed_arguments({}) is None
    assert distributed_arguments({"OCJAX_DISTRIBUTED": "0", "OCJAX_HEARTBEAT_TIMEOUT": "9"}) is None


def test_cluster_detection_and_explicit_processes():
    assert distributed_arguments({"OCJAX_DISTRIBUTED": "1"}) == {}
    environ = {
        "OCJAX_COORDINATOR": "localhost:1234",
        "OCJAX_NUM_PROCESSES": "2",
        "OCJAX_PROCESS_ID": "1",
        "OCJAX_HEARTBEAT_TIMEOUT": "10",
    }
    assert distributed_arguments(environ) == {
        "coordinator_address": "localhost:1234",
        "num_processes": 2,
        "process_id": 1,
        "heartbeat_timeout_seconds": 10,
    }


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="OCJAX_SHUTDOWN_TIMEOUT is 'soon'"):
        distributed_arguments({"OCJAX_DISTRIBUTED": "1", "OCJAX_SHUTDOWN_TIMEOUT": "soon"})
    with pytest.raises(ValueError, match="set all three"):
        distributed_arguments({"OCJAX_COORDINATOR": "h:1", "OCJAX_PROCESS_ID": "0"})
