"""Draw the user guide's picture: docs/_static/ot_cluster_masses.png.

Run once by hand (``python docs/make_figures.py``, a few seconds on a CPU)
and commit the PNG; the Sphinx build does not run it. Needs matplotlib.

A toy long-tailed problem: 3 groups of 600 / 200 / 50 points in 2-D, and a
cluster head that already points at the group centres (logits = minus the
squared distance to each centre). The left panel shows how much mass each
cluster receives from balanced OT and from P²OT at a few transported
fractions ρ, next to the true group sizes; the right panel shows the
sigmoid ramp of ρ over training.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from skclust_ot.ot import cost_from_logits, p2ot, rho_schedule  # noqa: E402

OUT = Path(__file__).resolve().parent / "_static" / "ot_cluster_masses.png"


def main():
    rng = np.random.default_rng(0)
    sizes = np.array([600, 200, 50])
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [1.5, 2.6]])
    X = np.concatenate([rng.normal(c, 0.9, size=(n, 2)) for c, n in zip(centres, sizes)])
    logits = -((X[:, None, :] - centres[None, :, :]) ** 2).sum(-1)
    cost = cost_from_logits(torch.as_tensor(logits, dtype=torch.float64))

    # Each bar: fraction of the transported mass that goes to each cluster.
    settings = [
        ("balanced OT\n(ρ = 1, λ = ∞)", dict(rho=1.0, kl_weight=float("inf"))),
        ("P²OT ρ = 0.1", dict(rho=0.1, kl_weight=1.0)),
        ("P²OT ρ = 0.5", dict(rho=0.5, kl_weight=1.0)),
        ("P²OT ρ = 1", dict(rho=1.0, kl_weight=1.0)),
    ]
    shares = {"true sizes": sizes / sizes.sum()}
    for name, kw in settings:
        _, log = p2ot(cost, kw["rho"], kl_weight=kw["kl_weight"], epsilon=0.1)
        mass = log["column_mass"].numpy()
        shares[name] = mass / mass.sum()

    fig, (ax, ax_rho) = plt.subplots(
        1, 2, figsize=(9.0, 3.4), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    width = 0.8 / len(shares)
    colours = ["0.25", "tab:red", "#9ecae1", "#4292c6", "#08519c"]
    for i, (name, share) in enumerate(shares.items()):
        ax.bar(np.arange(3) + (i - (len(shares) - 1) / 2) * width, share, width,
               label=name, color=colours[i])
    ax.set_xticks(np.arange(3), [f"cluster {k}\n({n} points)" for k, n in enumerate(sizes)])
    ax.set_ylabel("share of transported mass")
    ax.set_title("Cluster masses of the transport plan")
    ax.legend(fontsize=7.5, frameon=False)

    t = np.linspace(0, 1, 101)
    ax_rho.plot(t, [rho_schedule(s, 1.0, rho0=0.1, kind="sigmoid") for s in t],
                label="sigmoid (default)")
    ax_rho.plot(t, [rho_schedule(s, 1.0, rho0=0.1, kind="linear") for s in t],
                "--", label="linear")
    ax_rho.set_xlabel("training progress t / T")
    ax_rho.set_ylabel("transported fraction ρ")
    ax_rho.set_ylim(0, 1.05)
    ax_rho.set_title("Progressive schedule of ρ")
    ax_rho.legend(fontsize=7.5, frameon=False)

    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    for name, share in shares.items():
        print(f"{name.splitlines()[0]:<14} " + " ".join(f"{s:.3f}" for s in share))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
