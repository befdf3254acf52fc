"""Does an untargeted trigger tell an all-to-all backdoor apart? (The scan inverts, per class, the
smallest trigger that sends other classes' images to it; an all-to-all backdoor sends class `c`
to `c + 1`, so no class needs a small trigger and the zoo's four all-to-all models go unflagged
or, `wanet_all2all`, flagged with a class that is not a target.)

Here one trigger of each kind (local, global, warp, smooth, as `kcc.scan.inversion` shapes them)
is inverted to change the model's class of an image, to any other class:

    min  -log(1 - softmax(F(x'))_y) + lambda * size,    y = the model's class of x

beside the per-class (targeted) ones, on the scan's CPU budget (64 synthetic images, half to fit
on, half held aside; 100 steps of 8). Per kind the probe records the untargeted trigger's size and
held-aside flip rate (share of images whose class changes) and every class's targeted size and
flip rate. A clean model's cheapest way to change every image's class is to send them to its
easiest class, so its untargeted trigger should be about as large as its smallest targeted one;
an all-to-all trigger changes every class at once and should be much smaller. Test images are
used only in the diagnostic columns (`test_flip`: share of test images whose class the
untargeted trigger changes; `test_next`: share sent to `y + 1`, the all-to-all attacks' label).

    KCC_DATA_DIR=/work/shared/datasets KERAS_BACKEND=jax \\
        python benchmarks/results/probes/probe_untargeted.py clean,badnets_all2all,...

Rows go to `untargeted.json` beside this file (key: model).
"""
import json, os, sys, time
sys.path.insert(0, "benchmarks")
import numpy as np
import zoo
from kcc import saving, synthesis, training
from kcc import scan as scan_lib
from kcc.scan import inversion
from kcc.scan import untargeted

OUT = os.path.join(os.path.dirname(__file__), "untargeted.json")
BUDGET = scan_lib.BUDGETS["cpu"]
#: With `UNTARGETED_ONLY=1` in the environment the targeted triggers are not inverted (no
#: `targeted_*` columns, no `ratio`): the false-positive check over the rest of the zoo.
UNTARGETED_ONLY = os.environ.get("UNTARGETED_ONLY") == "1"


def dominant(before, after):
    """Of the images whose class changed, the share that went to the most common new class."""
    changed = after[before != after]
    return float(np.bincount(changed).max() / len(changed)) if len(changed) else float("nan")


def consistency(before, after):
    """Of the images whose class changed, the share that went to their source class's most
    common new class (1 when each class moves to one class, as in an all-to-all backdoor)."""
    keep = before != after
    if not keep.any():
        return float("nan")
    b, a = before[keep], after[keep]
    return float(sum(np.bincount(a[b == c]).max() for c in np.unique(b)) / len(a))


def probe(name):
    start = time.time()
    model, attack, x, y, _ = zoo.load_entry(name, 100)
    images, _, _ = synthesis.synthesize(model, BUDGET["num_images"], BUDGET["synthesis_steps"],
                                        batch_size=BUDGET["num_images"], seed=0, verbose=False)
    labels = training.predict_labels(model, images)
    half = len(images) // 2
    fit, held, fit_labels, held_labels = images[:half], images[half:], labels[:half], labels[half:]
    steps, batch = BUDGET["inversion_steps"], BUDGET["inversion_batch_size"]
    targeted = ({kind: [] for kind in inversion.KINDS} if UNTARGETED_ONLY else
                inversion.invert_triggers(model, fit, fit_labels, steps, batch, verbose=False))
    moving = untargeted.invert_untargeted(model, fit, fit_labels, steps, batch, verbose=False)
    test_pred = training.predict_labels(model, x)
    row = {"model": name, "kinds": {}}
    for kind in inversion.KINDS:
        inversion.flip_rates(model, targeted[kind] + [moving[kind]], held, held_labels)
        u = moving[kind]
        stamped = training.predict_labels(model, u.apply(x))
        moved = training.predict_labels(model, u.apply(held))
        num_classes = int(model.outputs[0].shape[-1])
        sizes = [t.size for t in targeted[kind]]
        row["kinds"][kind] = {
            "untargeted_size": u.size, "untargeted_flip": u.flip_rate,
            "targeted_sizes": sizes, "targeted_flips": [t.flip_rate for t in targeted[kind]],
            "ratio": min(sizes) / max(u.size, 1e-12) if sizes else None,
            "dominant": dominant(held_labels, moved),
            "consistency": consistency(held_labels, moved),
            "test_dominant": dominant(test_pred, stamped),
            "test_consistency": consistency(test_pred, stamped),
            "test_flip": float(np.mean(stamped != test_pred)),
            "test_next": float(np.mean(stamped == (np.asarray(y) + 1) % num_classes))}
        print(name, kind, {k: (round(v, 3) if isinstance(v, float) else v)
                           for k, v in row["kinds"][kind].items()
                           if k not in ("targeted_sizes", "targeted_flips")},
              "targeted", np.round(sizes, 2).tolist(), flush=True)
    row["seconds"] = round(time.time() - start, 1)
    row["machine"] = zoo.machine()
    results = json.load(open(OUT)) if os.path.exists(OUT) else {}
    results[name] = {**row, "untargeted_only": UNTARGETED_ONLY}
    saving.write_json(results, OUT)


for name in sys.argv[1].split(","):
    probe(name)
