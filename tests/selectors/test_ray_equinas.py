"""EquiNAS_E through the Ray executor: the serial result, and a serial run resumed on Ray.

Slow (a local Ray instance of 2 CPUs takes 10-30 s to start); skipped without Ray.
"""

import pytest
import torch
from selector_toys import without_time
from test_equinas_e import DiesAfter, Interrupted, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray")
    from bayesym.selectors.ray_executor import RayExecutor

    with RayExecutor(num_cpus=2) as executor:
        yield executor


def test_equinas_on_ray_equals_serial_and_resumes_across_executors(ray_executor, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as every Ray task
    try:
        serial = run(run_dir=tmp_path / "serial")
        on_ray = run(executor=ray_executor)
        with pytest.raises(Interrupted):
            run(run_dir=tmp_path / "cut", executor=DiesAfter(2))  # root and generation 1
        resumed = run(run_dir=tmp_path / "cut", executor=ray_executor)
    finally:
        torch.set_num_threads(threads)
    for other in (on_ray, resumed):
        assert without_time(other.to_json()) == without_time(serial.to_json())
        for key, value in serial.model.state_dict().items():
            torch.testing.assert_close(other.model.state_dict()[key], value, atol=0, rtol=0)
