from tinymod.cli import main

main(prog_name="tinymod")
