"""bf16 autocast against float32 for one restorer training step on a CPU (results: bench/results/bf16-cpu.md).

    PYTHONPATH=. python bench/precision_speed.py THREADS
"""
import sys, time, torch, contextlib
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1]))
from diffloss.prior import DiffusionPrior
from diffloss.loss import DiffLoss, DiffLossConfig
from diffloss.nets import load_restorer
threads = int(sys.argv[1]); torch.set_num_threads(threads)
prior = DiffusionPrior.from_pretrained("pretrained/prior")
net = load_restorer("pretrained/restorers/noise/l2").float().train()
opt = torch.optim.AdamW(net.parameters(), 1e-4)
def step(crop, gamma, bf16, pc=None):
    x = torch.rand(8, 3, crop, crop)
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    loss = DiffLoss(prior, DiffLossConfig(gamma=gamma, lam=0.1, track_when_off=False, report_grad_share=False, prior_crop=pc))
    with ctx:
        z = net(x)
        terms = loss(z.float(), x, generator=torch.Generator().manual_seed(0))
    opt.zero_grad(); terms.backward(); opt.step()
for name, crop, gamma, bf16, pc in [("l2 96", 96, 0.0, False, None), ("l2 96 bf16", 96, 0.0, True, None),
        ("dl 64", 64, 0.05, False, None), ("dl 64 bf16", 64, 0.05, True, None), ("dl 96 pc64 bf16", 96, 0.05, True, 64)]:
    step(crop, gamma, bf16, pc)
    t = time.time(); n = 4
    for _ in range(n): step(crop, gamma, bf16, pc)
    print(threads, name, round((time.time() - t) / n, 3), flush=True)
