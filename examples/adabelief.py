"""A new optimizer in ten lines: AdaBelief (Zhuang et al., 2020, arXiv:2010.07468).

Adam's second moment tracks g^2; AdaBelief tracks (g - m)^2, the "belief" in the
current gradient direction. Everything else (bias corrections, decoupled weight
decay) is AdamW's. Run this file to train a small model with it:

    .venv/bin/python examples/adabelief.py
"""
from optforge import Optimizer
from optforge.dsl import Rule, grad, lerp, param, sqrt, state, step


def adabelief(lr=1e-3, betas=(0.9, 0.999), eps=1e-16, weight_decay=1e-2):
    p, g, t = param(), grad(), step()
    beta1, beta2 = betas
    m = lerp(state("exp_avg"), g, 1 - beta1)
    s = beta2 * state("exp_avg_var") + (1 - beta2) * (g - m) ** 2 + eps
    m_hat, s_hat = m / (1 - beta1**t), s / (1 - beta2**t)
    return Rule(p * (1 - lr * weight_decay) - lr * m_hat / (sqrt(s_hat) + eps),
                exp_avg=m, exp_avg_var=s)


if __name__ == "__main__":
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    x = torch.randn(512, 16)
    y = x[:, :1] * x[:, 1:2] + torch.sin(x[:, 2:3])
    opt = Optimizer(model.parameters(), adabelief, lr=3e-3)
    for i in range(301):
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if i % 100 == 0:
            print(f"step {i:3d}  loss {loss.item():.4f}")
