"""Rule colored_meshes: K skin colourings of the hand mesh, from MANO scans or procedural."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from snakemake.script import snakemake


def main(smk) -> None:
    from hand3d.runlog import logged
    from hand3d.skin_colors import build_colors

    colors = smk.params.colors
    with logged(smk.log[0]):
        build_colors(
            smk.output.npz,
            smk.input.model,
            count=colors["count"],
            seed=smk.params.seed,
            registered_dir=colors["registered_meshes"],
            scans_dir=colors["scans"],
        )


if __name__ == "__main__":
    main(snakemake)
