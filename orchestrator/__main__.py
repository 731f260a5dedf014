from orchestrator.train import main

main()
