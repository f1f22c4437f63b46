//! Mounting as other FUSE filesystems mount: `regfs mount -o OPTION[,OPTION...]`, and regfs as
//! the helper `mount(8)` runs for `mount -t fuse.regfs` and `/etc/fstab` lines of type
//! `fuse.regfs` (installed as `/sbin/mount.fuse.regfs`, a link to the regfs binary).
//!
//! Pure: turns option strings and the helper's command line into [`MountOptions`] and an
//! ordinary `regfs mount` command line; the daemon mounts.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use fuser::MountOption;

use crate::daemon::{Allow, MountOptions, check_log_level};
use crate::err;
use crate::error::Result;

/// Options `mount(8)`, fstab and systemd use for themselves; a helper receives some of them
/// and has nothing to do with them.
fn userspace_only(option: &str) -> bool {
    const FLAGS: [&str; 11] = [
        "_netdev",
        "nofail",
        "noauto",
        "auto",
        "defaults",
        "user",
        "users",
        "nouser",
        "owner",
        "group",
        "nosymfollow",
    ];
    FLAGS.contains(&option)
        || option.starts_with("x-")
        || option.starts_with("comment=")
        || option.starts_with("context=")
}

/// The kernel's generic mount flags, passed on as they are.
fn kernel_flag(option: &str) -> Option<MountOption> {
    Some(match option {
        "dev" => MountOption::Dev,
        "nodev" => MountOption::NoDev,
        "suid" => MountOption::Suid,
        "nosuid" => MountOption::NoSuid,
        "exec" => MountOption::Exec,
        "noexec" => MountOption::NoExec,
        "atime" => MountOption::Atime,
        "noatime" => MountOption::NoAtime,
        "sync" => MountOption::Sync,
        "async" => MountOption::Async,
        "dirsync" => MountOption::DirSync,
        _ => return None,
    })
}

/// Applies one `-o` list to `opts`, in order (a later option wins). `sloppy` (`mount -s`)
/// passes over options regfs does not know instead of refusing the mount.
pub fn apply(opts: &mut MountOptions, list: &str, sloppy: bool) -> Result<()> {
    for option in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let (key, value) = match option.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (option, None),
        };
        let need = |what: &str| {
            value
                .filter(|v| !v.is_empty())
                .ok_or_else(|| err!(EINVAL, "mount option {key} needs a value: {key}={what}"))
        };
        const FLAGS: [&str; 9] = [
            "xattr",
            "noxattr",
            "ro",
            "rw",
            "allow_other",
            "allow_root",
            "default_permissions",
            "no_posix_permissions",
            "foreground",
        ];
        if value.is_some() && (FLAGS.contains(&key) || kernel_flag(key).is_some()) {
            return Err(err!(
                EINVAL,
                "mount option {key} takes no value ({option:?})"
            ));
        }
        match key {
            "ro" => opts.read_only = true,
            "xattr" => opts.xattr = true,
            "noxattr" => opts.xattr = false,
            "rw" => opts.read_only = false,
            "allow_other" => opts.allow = Allow::Other,
            "allow_root" => opts.allow = Allow::Root,
            "default_permissions" => opts.posix_permissions = true,
            "no_posix_permissions" => opts.posix_permissions = false,
            "foreground" => opts.foreground = true,
            "config" => opts.config = Some(PathBuf::from(need("FILE")?)),
            "wso2_conf" => opts.wso2_conf = Some(PathBuf::from(need("DIR")?)),
            "data_dir" => opts.data_dir = PathBuf::from(need("DIR")?),
            "log_file" => opts.log_file = Some(PathBuf::from(need("FILE")?)),
            "log_level" => {
                opts.log_level = check_log_level(need("LEVEL")?)
                    .map_err(|e| err!(EINVAL, "mount option log_level: {e}"))?
            }
            "log_format" => {
                opts.log_json = match need("text|json")? {
                    "text" => false,
                    "json" => true,
                    other => {
                        return Err(err!(
                            EINVAL,
                            "mount option log_format={other}: use text or json"
                        ));
                    }
                }
            }
            "threads" => {
                let n = need("N")?;
                opts.threads = n.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    err!(EINVAL, "mount option threads={n}: a number of at least 1")
                })?;
            }
            "map" => {
                let v = need("ACCOUNT:USER")?;
                let (account, user) = v
                    .split_once(':')
                    .or_else(|| v.split_once('='))
                    .filter(|(a, u)| !a.is_empty() && !u.is_empty())
                    .ok_or_else(|| {
                        err!(
                            EINVAL,
                            "mount option map={v}: use map=ACCOUNT:USER (a local account name \
                             or uid, and a registry user)"
                        )
                    })?;
                opts.user_map.insert(account.to_string(), user.to_string());
            }
            _ if kernel_flag(key).is_some() => {
                opts.kernel.extend(kernel_flag(key));
            }
            _ if userspace_only(option) => {}
            _ if sloppy => {}
            _ => {
                return Err(err!(
                    EINVAL,
                    "unknown mount option {option:?} (see `regfs mount --help` and README, \
                     \"Mounting at boot\")"
                ));
            }
        }
    }
    if opts.config.is_some() && opts.wso2_conf.is_some() {
        return Err(err!(
            EINVAL,
            "config and wso2_conf name two configurations: give one"
        ));
    }
    Ok(())
}

/// What the helper's source (fstab's first field) names: the embedded default (`regfs` or
/// `none`), a configuration file, a WSO2 `repository/conf` directory (it holds
/// `registry.xml`), or a data directory.
fn source_args(source: &str) -> Vec<OsString> {
    let path = Path::new(source);
    let flag = if source.is_empty() || source == "regfs" || source == "none" {
        return Vec::new();
    } else if path.is_file() || (!path.exists() && source.ends_with(".toml")) {
        "--config"
    } else if path.join("registry.xml").is_file() {
        "--wso2-conf"
    } else {
        "--data-dir"
    };
    vec![flag.into(), source.into()]
}

/// The `regfs mount` command line for the helper's arguments, as `mount(8)` passes them:
/// `SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t TYPE]`. `None`: a fake mount (`-f`), nothing to
/// do.
pub fn helper_command(args: &[OsString]) -> Result<Option<Vec<OsString>>> {
    let usage = "usage: mount.fuse.regfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] (SOURCE: regfs \
                 for the embedded default, a configuration file, a WSO2 repository/conf \
                 directory or a data directory)";
    let mut positional: Vec<&OsString> = Vec::new();
    let mut options: Vec<OsString> = Vec::new();
    let (mut sloppy, mut fake) = (false, false);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-o" => match it.next() {
                Some(list) => options.push(list.clone()),
                None => return Err(err!(EINVAL, "-o needs a list of options; {usage}")),
            },
            "-t" | "-N" => {
                let value = it.next().map(|v| v.to_string_lossy().into_owned());
                if text == "-N" {
                    return Err(err!(
                        EINVAL,
                        "mount.fuse.regfs cannot mount into another namespace (-N)"
                    ));
                }
                if let Some(t) = value
                    && t != "fuse.regfs"
                    && t != "regfs"
                {
                    return Err(err!(EINVAL, "mount.fuse.regfs mounts fuse.regfs, not {t}"));
                }
            }
            flags if flags.starts_with('-') && flags.len() > 1 && !flags.starts_with("--") => {
                for c in flags[1..].chars() {
                    match c {
                        's' => sloppy = true,
                        'f' => fake = true,
                        'n' | 'v' => {}
                        other => {
                            return Err(err!(EINVAL, "unknown flag -{other}; {usage}"));
                        }
                    }
                }
            }
            _ => positional.push(arg),
        }
    }
    let [source, mountpoint] = positional[..] else {
        return Err(err!(EINVAL, "{usage}"));
    };
    if fake {
        return Ok(None);
    }
    let mut cmd: Vec<OsString> = vec!["regfs".into(), "mount".into()];
    cmd.extend(source_args(&source.to_string_lossy()));
    for list in options {
        cmd.push("-o".into());
        cmd.push(list);
    }
    if sloppy {
        cmd.push("--sloppy".into());
    }
    cmd.push(mountpoint.clone());
    Ok(Some(cmd))
}

/// Whether the program was started as a mount helper (`mount.fuse.regfs`, `mount.regfs`).
pub fn is_helper(argv0: &OsString) -> bool {
    Path::new(argv0)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("mount."))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> MountOptions {
        MountOptions {
            mountpoint: "/mnt".into(),
            data_dir: "/var/lib/regfs".into(),
            foreground: false,
            log_level: "info".into(),
            log_file: None,
            log_json: false,
            posix_permissions: true,
            threads: 4,
            user_map: Default::default(),
            config: None,
            wso2_conf: None,
            read_only: false,
            allow: Allow::Owner,
            kernel: Vec::new(),
            xattr: false,
        }
    }

    #[test]
    fn options_set_what_the_flags_set() {
        let mut o = base();
        apply(
            &mut o,
            "ro,allow_other,nosuid,nodev,config=/etc/regfs/regfs.toml,threads=8,\
             log_level=debug,log_format=json,map=deploy:ops,_netdev,x-systemd.requires=pg",
            false,
        )
        .unwrap();
        assert!(o.read_only);
        assert_eq!(o.allow, Allow::Other);
        assert_eq!(o.kernel, vec![MountOption::NoSuid, MountOption::NoDev]);
        assert_eq!(o.config, Some(PathBuf::from("/etc/regfs/regfs.toml")));
        assert_eq!(
            (o.threads, o.log_level.as_str(), o.log_json),
            (8, "debug", true)
        );
        assert_eq!(o.user_map.get("deploy").map(String::as_str), Some("ops"));
        apply(&mut o, "rw", false).unwrap();
        assert!(!o.read_only, "a later option wins");
    }

    #[test]
    fn bad_options_are_refused_with_what_is_wrong() {
        for (list, says) in [
            ("frobnicate", "unknown mount option \"frobnicate\""),
            ("threads=0", "threads=0"),
            ("threads", "needs a value"),
            ("log_level=loud", "invalid log level"),
            ("log_format=xml", "use text or json"),
            ("map=nobody", "map=ACCOUNT:USER"),
            ("config=/a.toml,wso2_conf=/b", "give one"),
            ("ro=1", "takes no value"),
        ] {
            let e = apply(&mut base(), list, false).unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL);
            assert!(e.message().contains(says), "{list}: {}", e.message());
        }
        apply(&mut base(), "frobnicate", true).expect("sloppy passes over it");
    }

    #[test]
    fn the_fstab_example_says_what_regfs_takes() {
        let example = include_str!("../contrib/fstab.example");
        let lines: Vec<Vec<&str>> = example
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(!lines.is_empty());
        for f in lines {
            assert_eq!((f.len(), f[2]), (6, "fuse.regfs"), "{f:?}");
            apply(&mut base(), f[3], false).unwrap_or_else(|e| panic!("{f:?}: {e}"));
        }
    }

    #[test]
    fn the_helper_becomes_a_regfs_mount_command() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("regfs.toml");
        std::fs::write(&conf, "").unwrap();
        let wso2 = dir.path().join("conf");
        std::fs::create_dir(&wso2).unwrap();
        std::fs::write(wso2.join("registry.xml"), "").unwrap();
        let os = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        let c = conf.to_str().unwrap();
        assert_eq!(
            helper_command(&os(&[c, "/mnt/r", "-n", "-o", "rw,_netdev"])).unwrap(),
            Some(os(&[
                "regfs",
                "mount",
                "--config",
                c,
                "-o",
                "rw,_netdev",
                "/mnt/r"
            ]))
        );
        let w = wso2.to_str().unwrap();
        assert_eq!(
            helper_command(&os(&[w, "/mnt/r", "-sv"])).unwrap(),
            Some(os(&[
                "regfs",
                "mount",
                "--wso2-conf",
                w,
                "--sloppy",
                "/mnt/r"
            ]))
        );
        assert_eq!(
            helper_command(&os(&["regfs", "/mnt/r", "-o", "ro", "-t", "fuse.regfs"])).unwrap(),
            Some(os(&["regfs", "mount", "-o", "ro", "/mnt/r"]))
        );
        assert_eq!(
            helper_command(&os(&["/srv/regfs-data", "/mnt/r"])).unwrap(),
            Some(os(&[
                "regfs",
                "mount",
                "--data-dir",
                "/srv/regfs-data",
                "/mnt/r"
            ]))
        );
        assert_eq!(
            helper_command(&os(&["regfs", "/mnt/r", "-f"])).unwrap(),
            None
        );
        for bad in [
            &["regfs"][..],
            &["regfs", "/mnt/r", "-x"],
            &["regfs", "/m", "-t", "ext4"],
        ] {
            assert_eq!(helper_command(&os(bad)).unwrap_err().errno(), libc::EINVAL);
        }
        assert!(is_helper(&"/sbin/mount.fuse.regfs".into()));
        assert!(!is_helper(&"/usr/bin/regfs".into()));
    }
}
