"""Detection logic: pure code, no Kafka, Redis or network.

The same objects run inside the Faust worker and in the offline evaluation,
on the same inputs, with the same results.
"""
