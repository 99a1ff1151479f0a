"""Model case names shared by the peers (bench/DistillBench/ModelCases.swift parses the same
way): train-MODEL[-cC][-bB] and infer-MODEL[-cC][-bB], where -c3 means 3×32×32 inputs, -c1 (or
nothing) 1×28×28, and -bN the batch."""


def parse_model_case(name, batch):
    """(training, model, options, batch) from a train-/infer- case name, as DistillBench parses it."""
    parts = name[6:].split("-")
    if len(parts[-1]) > 1 and parts[-1][0] == "b" and parts[-1][1:].isdigit() and int(parts[-1][1:]) > 0:
        batch = int(parts.pop()[1:])
    options = {}
    if parts[-1] in ("c3", "c1"):
        options = {"input_channels": 3, "input_size": 32} if parts.pop() == "c3" else {"input_channels": 1, "input_size": 28}
    return name.startswith("train-"), "-".join(parts), options, batch
