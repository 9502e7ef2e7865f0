//! `distill run`: the whole pipeline in one dashboard (issue 6, in progress).
