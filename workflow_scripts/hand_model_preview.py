"""Rule hand_model_preview: a picture of the hand model's template and leading PCA poses."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.hand_preview import render_preview
    from hand3d.runlog import logged

    with logged(smk.log[0]):
        render_preview(smk.input.npz, smk.output.png, num_pca=smk.params.num_pca)


if __name__ == "__main__":
    main(snakemake)
