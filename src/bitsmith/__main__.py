from bitsmith.cli import main

main()
