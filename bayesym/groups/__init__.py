"""Finite groups acting on images and feature maps (pure maths: no ``torch.nn``).

Modules, one concept each:

* :mod:`~bayesym.groups.finite` — groups from Cayley tables, subgroups with embeddings,
  right cosets, generated subgroups.
* :mod:`~bayesym.groups.d4` — D4 in the project convention and its named subgroups.
* :mod:`~bayesym.groups.lattice` — the subgroup lattice (order questions of search).
* :mod:`~bayesym.groups.translations` — cyclic shifts of a pixel grid.
* :mod:`~bayesym.groups.actions` — image, regular, translation and trivial actions.
* :mod:`~bayesym.groups.restriction` — re-reading G-feature maps as H-feature maps.
* :mod:`~bayesym.groups.expansion` — index maps expanding group filters to conv kernels.
* :mod:`~bayesym.groups.pixel_transforms` — the one table of named pixel permutations.
* :mod:`~bayesym.groups.permutation` — AEN permutation groups on pixel grids and orbits.
"""

from bayesym.groups.actions import (
    ImageAction,
    RegularAction,
    TranslationAction,
    TrivialAction,
    image_transform,
)
from bayesym.groups.d4 import (
    D4_SUBGROUP_NAMES,
    d4_flip_rotation,
    d4_index,
    d4_subgroup,
    d4_subgroups,
    dihedral4,
)
from bayesym.groups.expansion import (
    expand_group_kernel,
    expand_lifting_kernel,
    group_conv_expansion_index,
    lifting_expansion_index,
)
from bayesym.groups.finite import (
    FiniteGroup,
    Subgroup,
    all_subgroups,
    check_group_axioms,
    coset_index,
    generated_subgroup,
    inclusion,
    is_subgroup,
    right_coset_decomposition,
    right_coset_representatives,
)
from bayesym.groups.lattice import SubgroupLattice, d4_lattice
from bayesym.groups.permutation import (
    PairOrbits,
    PermutationGroup,
    grid_group,
    grid_pair_orbits,
    orbit_labels,
    pair_orbits,
)
from bayesym.groups.pixel_transforms import (
    AUGMENTATION_PRESETS,
    PIXEL_TRANSFORMS,
    TRANSFORM_NAMES,
    PixelTransform,
    apply_transform,
    d4_image_action,
    d4_permutation,
    get_transform,
    pixel_permutation,
    resolve_transforms,
)
from bayesym.groups.restriction import (
    expand_feature_map,
    restrict_feature_map,
    restriction_index,
)
from bayesym.groups.translations import TranslationGroup, translation_group

__all__ = [
    # finite groups and subgroups
    "FiniteGroup",
    "Subgroup",
    "check_group_axioms",
    "generated_subgroup",
    "all_subgroups",
    "inclusion",
    "is_subgroup",
    "coset_index",
    "right_coset_representatives",
    "right_coset_decomposition",
    "SubgroupLattice",
    # D4 and its subgroups
    "D4_SUBGROUP_NAMES",
    "dihedral4",
    "d4_index",
    "d4_flip_rotation",
    "d4_subgroup",
    "d4_subgroups",
    "d4_lattice",
    # translations
    "TranslationGroup",
    "translation_group",
    # actions
    "ImageAction",
    "RegularAction",
    "TranslationAction",
    "TrivialAction",
    "image_transform",
    "d4_image_action",
    "d4_permutation",
    # named pixel permutations (one table for data and layers)
    "PIXEL_TRANSFORMS",
    "TRANSFORM_NAMES",
    "AUGMENTATION_PRESETS",
    "PixelTransform",
    "get_transform",
    "resolve_transforms",
    "pixel_permutation",
    "apply_transform",
    # AEN permutation groups and parameter-sharing orbits
    "PermutationGroup",
    "PairOrbits",
    "grid_group",
    "grid_pair_orbits",
    "orbit_labels",
    "pair_orbits",
    # feature-map layouts and kernel expansion
    "restriction_index",
    "restrict_feature_map",
    "expand_feature_map",
    "lifting_expansion_index",
    "group_conv_expansion_index",
    "expand_lifting_kernel",
    "expand_group_kernel",
]
