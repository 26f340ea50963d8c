"""The usage-metrics controller's choice of samples: whose metrics a caller reads."""

from types import SimpleNamespace

from apicrud.auth.principal import ANONYMOUS, Principal
from apicrud.metrics.controller import MetricController


class _Metrics:
    """Stands in for apicrud.metrics.usage.Metrics: records whose samples were asked for."""

    def __init__(self) -> None:
        self.asked: list = []

    def flush(self) -> None:
        pass

    def for_user(self, uid):
        self.asked.append(uid)
        return [SimpleNamespace(name="requests", uid=uid)]

    def scan(self):
        self.asked.append("*")
        return []


def _samples(principal):
    metrics = _Metrics()
    controller = MetricController(None, SimpleNamespace(metrics=metrics))
    return controller._samples(SimpleNamespace(principal=principal), {}), metrics.asked


def test_a_user_reads_only_their_own_metrics():
    samples, asked = _samples(Principal(uid="u-1", username="ann", status="active"))
    assert asked == ["u-1"] and len(samples) == 1


def test_an_anonymous_caller_reads_no_metrics_even_on_a_public_operation():
    # an application may mark metric.find x-public: the anonymous caller then has no
    # metrics of their own, and must not get those kept under a missing uid
    samples, asked = _samples(ANONYMOUS)
    assert samples == [] and asked == []
