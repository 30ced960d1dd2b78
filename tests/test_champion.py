"""The champion alias follows the best validation figure; every decision says why."""
from __future__ import annotations

import mlflow

from vqa.registry.champion import selection_figure, update_champion


def test_champion_moves_only_on_a_better_validation_figure(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)  # no process-wide MLflow state
    client.create_registered_model("m")
    versions = [client.create_model_version("m", source=str(tmp_path)).version for _ in range(4)]

    first = update_champion("m", versions[0], "validation", 0.2, client=client)
    assert first["promoted"] and first["reason"] == "no champion yet"
    worse = update_champion("m", versions[1], "validation", 0.1, client=client)
    assert not worse["promoted"] and worse["previous_value"] == 0.2 and worse["champion_version"] == str(versions[0])
    better = update_champion("m", versions[2], "validation", 0.3, client=client)
    assert better["promoted"] and "+0.300 > champion version" in better["reason"]
    none = update_champion("m", versions[3], "", None, client=client)
    assert not none["promoted"]
    assert str(client.get_model_version_by_alias("m", "champion").version) == str(versions[2])
    assert client.get_model_version("m", versions[1]).tags["w2s.select.validation"] == "0.1"


def test_the_champion_is_chosen_from_the_validation_figure_alone():
    # A student far better on every reported suite and benchmark, but with no validation figure,
    # gives nothing to choose by; only the validation figure is ever read.
    row = {"known_order_ood": {"srcc": 0.9}, "overall_ood": {"srcc": 0.9}, "ugc_mos": {"srcc": 0.9},
           "ugc_mos_konvid_1k": {"srcc": 0.9}}
    assert selection_figure({"models": {"s": row}}, "s") == ("", None)
    assert selection_figure({"models": {"s": row | {"validation": {"srcc": 0.4}}}}, "s") == ("validation", 0.4)
    assert selection_figure({"models": {"s": {"validation": {"srcc": None}}}}, "s") == ("", None)
