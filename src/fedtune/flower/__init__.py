"""fedtune on Flower's engines: a thin ServerApp/ClientApp pair over the same Strategy and
LocalTrainer as the embedded engine, plus helpers to start SuperLink/SuperNodes and runs.

- ``server_app``: the ServerApp (``fedtune.flower.server_app:app``)
- ``client_app``: the ClientApp (``fedtune.flower.client_app:app``)
- ``wire``: instructions and updates as Flower records (ArrayRecord, ConfigRecord, MetricRecord)
- ``cli``: ``fedtune flower superlink|supernode|run``
"""
