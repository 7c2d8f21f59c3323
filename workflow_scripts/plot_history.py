"""Rule plot_history: the loss curves of one training run."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.plots import plot_history
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        plot_history(smk.input.history, smk.output.png, f"training history: {smk.wildcards.run}")


if __name__ == "__main__":
    main(snakemake)
