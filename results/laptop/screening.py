"""Screening runs behind the cpu recipe: one JSON line per config, appended to results/laptop/screening.jsonl.

    DATA_ROOT=../shared/data/cifar10_20k python results/laptop/screening.py '{"method": "simclr", "epochs": 8, ...}' ...

Keys of a config: method, backbone (res_convnet), width (16), epochs, optimizer (adam), lr, wd (1e-6), warmup (0),
view_size (None: 32 px), batch_size (256), options (the method's), random (also score the untrained backbone),
monitor (kNN after every epoch, default true), seed (0), probe_epochs (30), choice ({choice: value}: the comparisons
of the book's "SSL on a laptop" page this run belongs to; see ssltutor.learn.screening_curves).
"""
import json, os, sys, time, torch
from pathlib import Path
from ssltutor import data, methods, train, evaluate
from ssltutor.data import augment
from ssltutor.models import create_backbone
torch.set_num_threads(2)
ROOT = os.environ.get("DATA_ROOT", "../shared/data/cifar10_20k")
OUT = Path(__file__).resolve().parent / "screening.jsonl"
tr = data.load("cifar10", root=ROOT, split="train", size=32)
te = data.load("cifar10", root=ROOT, split="test", size=32)
stats = augment.STATS["cifar10"]
g = torch.Generator().manual_seed(0)
MON = evaluate.KNNMonitor(tr.subset(torch.randperm(len(tr), generator=g)[:10000]), te.subset(torch.randperm(len(te), generator=g)[:5000]), k=20)

def evaluate_backbone(m):
    ftr = m.features(tr.images); fte = m.features(te.images)
    probe = evaluate.linear_probe(ftr, tr.labels, fte, te.labels, epochs=cfg.get("probe_epochs", 30), batch_size=512).accuracy
    knn = evaluate.knn_accuracy(ftr, tr.labels, fte, te.labels, k=20)
    return probe, knn

for arg in sys.argv[1:]:
    cfg = json.loads(arg)
    torch.manual_seed(cfg.get("seed", 0))
    bb = create_backbone(cfg.get("backbone", "res_convnet"), width=cfg.get("width", 16))
    opts = dict(cfg.get("options", {}))
    name = cfg["method"]
    vs = cfg.get("view_size")
    if vs and name != "supervised":
        recipe = methods.METHODS[name].view_recipe
        vopts = {"scale": tuple(opts.get("crop_scale", (0.2, 1.0)))}
        vopts.update(cfg.get("view_options", {}))
        opts["views"] = augment.views_for(recipe, vs, *stats, **vopts)
    m = methods.create(name, bb, dataset="cifar10", **opts)
    t0 = time.perf_counter()
    out = {"cfg": cfg}
    if cfg.get("random", False):
        m.eval(); out["probe0"], out["knn0"] = evaluate_backbone(m)
    if cfg.get("epochs", 0) > 0:
        h = train.fit(m, tr, epochs=cfg["epochs"], batch_size=cfg.get("batch_size", 256), optimizer=cfg.get("optimizer", "adam"),
                  lr=cfg.get("lr"), weight_decay=cfg.get("wd", 1e-6), warmup_epochs=cfg.get("warmup", 0),
                  precision="bf16", channels_last=True, seed=cfg.get("seed", 0), progress=False,
                  callbacks=[MON] if cfg.get("monitor", True) else [])
        out["curve"] = [[float(a), float(b)] for a, b in zip(h.epochs["time_s"].cumsum(), h.epochs.get("knn_acc", h.epochs["time_s"] * 0))]
        out["train_s"] = round(float(h.epochs["time_s"].sum()), 1)
        out["loss_last"] = float(h.epochs["loss"].iloc[-1])
        if name == "supervised":
            m.eval()
            with torch.no_grad():
                correct = 0
                for i in range(0, len(te), 1000):
                    x = m.eval_transform(te.images[i:i+1000]).contiguous(memory_format=torch.channels_last)
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        logits = m.classifier(m.backbone(x))
                    correct += (logits.argmax(1) == te.labels[i:i+1000]).sum().item()
            out["test_acc"] = correct / len(te)
        out["probe"], out["knn"] = evaluate_backbone(m)
    out["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out), flush=True)
    with open(OUT, "a") as f:
        f.write(json.dumps(out) + "\n")
