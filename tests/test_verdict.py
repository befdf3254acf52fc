import json

import pytest

from kcc import verdict


def _rates(acc, asr=None, ra=0.1):
    return {"acc": acc} if asr is None else {"acc": acc, "asr": asr, "ra": ra, "n_triggered": 900}


@pytest.mark.parametrize("case", [
    dict(before=0.96, after=0.02, label="removed",
         words="Backdoor removed for the trigger tested: ASR 96.00% -> 2.00%"),
    dict(before=0.96, after=0.10, label="removed", words="Backdoor removed"),
    dict(before=0.96, after=0.40, label="reduced", words="Backdoor reduced but NOT removed"),
    dict(before=0.96, after=0.90, label="not_removed", words="Backdoor NOT removed: ASR 96.00%"),
    dict(before=0.96, after=0.96, label="not_removed", words="Backdoor NOT removed: ASR"),
    dict(before=0.9633, after=0.9944, label="not_removed",
         words="Backdoor NOT removed, and ASR ROSE: ASR 96.33% -> 99.44%"),
    dict(before=0.05, after=0.02, label="not_seen", words="No backdoor seen with this trigger"),
])
def test_the_verdict_reads_asr_before_and_after(case):
    judged = verdict.judge(_rates(0.84, case["before"]), _rates(0.64, case["after"]))
    assert judged.backdoor == case["label"]
    assert judged.sentence.startswith(case["words"]), judged.sentence
    assert judged.sentence.endswith("ACC 84.00% -> 64.00% (20.00 points lost).")
    assert (judged.asr_before, judged.asr_after) == (case["before"], case["after"])


def test_an_asr_that_does_not_fall_is_never_called_removed_or_reduced():
    for after in (0.95, 0.96, 0.97, 1.0):
        judged = verdict.judge(_rates(0.8, 0.95), _rates(0.8, after))
        assert judged.backdoor == "not_removed" and "NOT removed" in judged.sentence


def test_without_images_or_trigger_the_verdict_says_what_to_pass():
    judged = verdict.judge(None, None)
    assert judged.backdoor == "unknown"
    assert "no evaluation data given: run `kcc.scan` or pass `--eval_data`" in judged.sentence
    judged = verdict.judge(_rates(0.8), _rates(0.7))
    assert judged.backdoor == "unknown" and "pass `--attack`" in judged.sentence
    assert "ACC 80.00% -> 70.00% (10.00 points lost)" in judged.sentence
    record = json.loads(json.dumps(judged.to_dict()))
    assert record["thresholds"] == {"removed_asr": 0.1, "reduced_drop": 0.1}


def test_the_table_has_one_row_per_measure():
    text = verdict.table(_rates(0.836, 0.9633, 0.0322), _rates(0.64, 0.9944, 0.0056),
                         (701466, 233612), (70093312, 38489792), 560.2)
    lines = text.splitlines()
    assert [line.split()[0] for line in lines] == ["suspect", "ACC", "ASR", "RA", "parameters",
                                                  "FLOPs", "seconds"]
    assert lines[2].split() == ["ASR", "96.33%", "99.44%"]
    assert lines[4].split() == ["parameters", "701,466", "233,612", "3.00x", "fewer"]
    assert lines[6].split() == ["seconds", "-", "560.2"]
    empty = verdict.table(None, None, (4, 2), (8, 4), 1.0).splitlines()
    assert empty[1].split() == ["ACC", "-", "-"]


def test_the_summary_ends_with_the_legend_and_the_verdict():
    text, judged = verdict.summary(_rates(0.84, 0.96), _rates(0.64, 0.99), (6, 2), (9, 3), 1.5,
                                   images=1000)
    lines = text.splitlines()
    assert lines[0] == "Measured on 1,000 labelled images (900 of them with the trigger):"
    assert lines[-2:] == [verdict.LEGEND, judged.sentence] and judged.backdoor == "not_removed"
    text, judged = verdict.summary(None, None, (6, 2), (9, 3), 1.5)
    assert text.splitlines()[-1] == judged.sentence and verdict.LEGEND not in text


def test_the_closing_table_compares_the_model_written_not_a_probe_copy():
    kcc_stages = dict.fromkeys(["suspect", "compressed", "purified", "purified, BN re-estimated",
                                "purified, fine-tuned"], {})
    assert verdict.final_stage(kcc_stages) == "purified"
    assert verdict.final_stage(dict.fromkeys(["suspect", "scaled", "compressed"], {})) == "compressed"
    assert verdict.final_stage({}) == "purified"
