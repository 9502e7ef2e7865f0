//! `distill chat`: teacher and student side by side in the terminal (issue 5, in progress).
