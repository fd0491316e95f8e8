{
  # Builds shoal's binaries (bdecode, mktorrent, bverify, btrack, bseed, bfetch) and man pages.
  # `nix build` gives fully static binaries (musl, via pkgsStatic) that run on any Linux host
  # of the same architecture; `nix build .#dynamic` links them normally.
  # Tests are not run here: they need Debian's tools (see scripts/test.sh).
  description = "shoal: sync very large files across a closed fleet with BitTorrent";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      shoal = pkgs: pkgs.rustPlatform.buildRustPackage {
        pname = "shoal";
        version = "0.1.0";
        src = self;
        cargoLock.lockFile = ./Cargo.lock;
        doCheck = false;
        postInstall = ''
          install -Dm644 -t $out/share/man/man1 man/*.1
        '';
        meta = {
          description = "Sync very large files across a closed fleet with BitTorrent";
          license = with pkgs.lib.licenses; [ mit asl20 ];
          platforms = pkgs.lib.platforms.linux;
        };
      };
    in {
      packages = forAllSystems (pkgs: rec {
        static = shoal pkgs.pkgsStatic;
        dynamic = shoal pkgs;
        default = static;
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = with pkgs; [ cargo rustc clippy rustfmt ];
        };
      });
    };
}
