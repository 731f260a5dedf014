from orchestrator.train import cli

cli()
