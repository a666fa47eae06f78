//! playbook (being written).
