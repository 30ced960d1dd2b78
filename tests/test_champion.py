"""The champion alias follows the best OOD figure; every decision says why."""
from __future__ import annotations

import mlflow

from vqa.registry.champion import ood_figure, update_champion


def test_champion_moves_only_on_a_better_ood_figure(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)  # no process-wide MLflow state
    client.create_registered_model("m")
    versions = [client.create_model_version("m", source=str(tmp_path)).version for _ in range(4)]

    first = update_champion("m", versions[0], "known_order_ood", 0.2, client=client)
    assert first["promoted"] and first["reason"] == "no champion yet"
    worse = update_champion("m", versions[1], "known_order_ood", 0.1, client=client)
    assert not worse["promoted"] and worse["previous_value"] == 0.2 and worse["champion_version"] == str(versions[0])
    better = update_champion("m", versions[2], "known_order_ood", 0.3, client=client)
    assert better["promoted"] and "+0.300 > champion version" in better["reason"]
    none = update_champion("m", versions[3], "", None, client=client)
    assert not none["promoted"]
    assert str(client.get_model_version_by_alias("m", "champion").version) == str(versions[2])
    assert client.get_model_version("m", versions[1]).tags["w2s.ood.known_order_ood"] == "0.1"


def test_ood_figure_prefers_configured_benchmarks():
    row = {"known_order_ood": {"srcc": 0.1}, "overall_ood": {"srcc": 0.4}}
    assert ood_figure({"models": {"s": row}}, "s") == ("overall_ood", 0.4)
    assert ood_figure({"models": {"s": {"known_order_ood": {"srcc": 0.1}}}}, "s") == ("known_order_ood", 0.1)
    assert ood_figure({"models": {"s": {"known_order_ood": {"srcc": None}}}}, "s") == ("", None)
