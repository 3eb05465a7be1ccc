import csv

from radisim.evals import report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_report_files_are_valid_png_and_csv(suite_runs, tmp_path):
    result = suite_runs["cold"]
    curriculum = {k: min(1.0, v + 0.2) for k, v in result.metrics.items()}  # a second "model" row
    files = report.write_report([result], tmp_path / "single")
    assert files["radar"][0].read_bytes().startswith(PNG_MAGIC)
    rocs = {p.name for p in files["roc"]}
    assert "roc_stage4_br35h.png" in rocs and len(rocs) == 10
    confusions = {p.name for p in files["confusion"]}
    assert "confusion_stage1_modality.png" in confusions and len(confusions) == 12  # 7 single-label + 5 localization
    for path in [*files["roc"], *files["confusion"]]:
        assert path.read_bytes().startswith(PNG_MAGIC)

    both = {"tiny-random": result.metrics, "tiny-curriculum": curriculum}
    radar = report.radar_plot(both, tmp_path / "radar.png")
    assert radar.read_bytes().startswith(PNG_MAGIC) and radar.stat().st_size > 10_000
    path = report.comparison_csv(both, tmp_path / "comparison.csv")
    rows = list(csv.DictReader(path.open()))
    assert [r["model"] for r in rows] == ["tiny-random", "tiny-curriculum"]
    assert float(rows[0]["stage4/br35h/auc"]) == result.metrics["stage4/br35h/auc"]
    assert set(rows[0]) == {"model", *result.metrics}


def test_stage_table_has_a_row_per_model_and_a_column_per_stage(suite_runs):
    m = suite_runs["cold"].metrics
    text = report.format_stage_table({"phase 1": {"stage1/score": 0.5}, "phase 5": m})
    lines = text.splitlines()
    assert lines[0].split() == ["model", *report.STAGE_LABELS, "mean"]
    assert lines[2].split()[:4] == ["phase", "1", "0.500", "-"]
    assert f"{m['stage3/score']:.3f}" in lines[3]
    print("\n" + text)


def test_report_states_cases_and_images_per_subtask(suite_runs, tmp_path):
    result = suite_runs["cold"]
    files = report.write_report([result], tmp_path / "r")
    counts = next(p for p in files["table"] if p.name == "subtasks.txt").read_text().splitlines()
    assert len(counts) == 1 + len(result.subtasks) and counts[0].split()[-3:] == ["cases", "images", "scored"]
    row = next(line for line in counts if line.startswith("br35h "))
    m = result.metrics
    assert row.split()[-3:] == [str(int(m["stage4/br35h/n_cases"])), str(int(m["stage4/br35h/n_images"])),
                                str(int(m["stage4/br35h/n_scored"]))]
