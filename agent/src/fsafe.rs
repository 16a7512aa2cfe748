//! File operations that cannot be redirected. hangwatch runs as root and writes where other
//! users may have been first: every directory is opened component by component with
//! `O_NOFOLLOW` and then used through its descriptor (`*at` calls), files are created with
//! `O_CREAT|O_EXCL|O_NOFOLLOW` and mode 0600, and files are read only when they are regular,
//! unlinked elsewhere (one link) and not symlinks. Threats and choices: docs/security.md.
use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A directory opened without following any symlink, used only through its descriptor.
#[derive(Debug)]
pub struct SafeDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// How [`SafeDir::rename`] treats an existing destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rename {
    /// Fail with EEXIST.
    NoReplace,
    /// Swap the two atomically (both must exist): a reader sees the old or the new, never neither.
    Exchange,
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

fn egid() -> u32 {
    rustix::process::getegid().as_raw()
}

fn symlink_error(path: &Path, at: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{} is a symbolic link (in {}): hangwatch writes as root and never follows a link it did not make; \
         give the real path (`realpath {}`)",
        at.display(),
        path.display(),
        path.display()
    )
}

/// An ancestor another user can rename entries in lets them swap the path under us.
fn check_ancestor(st: &rfs::Stat, at: &Path) -> Result<()> {
    let mode = st.st_mode;
    let sticky = mode & 0o1000 != 0;
    let other_w = mode & 0o002 != 0;
    let group_w = mode & 0o020 != 0 && st.st_gid != 0 && st.st_gid != egid();
    if (other_w || group_w) && !sticky {
        bail!(
            "{} is writable by other users (mode {:04o}) without the sticky bit, so they could swap \
             the path hangwatch writes to: use a directory under a root-owned parent (e.g. /var/lib/hangwatch)",
            at.display(),
            mode & 0o7777
        );
    }
    if !trusted_owner(st.st_uid, euid()) {
        bail!(
            "{} is owned by uid {}, who could swap the path hangwatch writes to: use a directory whose \
             parents are owned by root or by you",
            at.display(),
            st.st_uid
        );
    }
    Ok(())
}

/// Who may own a directory hangwatch writes in: the user it runs as (the packaged service's
/// `hangwatch` user owns its StateDirectory) or root (who could redirect anything anyway).
/// Anyone else could plant or swap files in it.
fn trusted_owner(owner: u32, euid: u32) -> bool {
    owner == euid || owner == 0
}

/// The directory a privileged writer may use: owned by us or root, writable only by its owner.
fn check_private(st: &rfs::Stat, path: &Path) -> Result<()> {
    private_problem(st.st_uid, st.st_mode, euid(), path).map_or(Ok(()), Err)
}

/// The fix for a directory that is not private: another one, never `chmod` or `chown` of
/// this one (that could be /tmp, or hand root a directory another user filled).
const CHOOSE_PRIVATE: &str = "choose a directory only this user can write instead; hangwatch \
     creates a missing one with mode 0700 (for example /var/lib/hangwatch/incidents)";

/// Why a directory owned by `owner` with `mode` is not private to a writer running as `euid`.
fn private_problem(owner: u32, mode: u32, euid: u32, path: &Path) -> Option<anyhow::Error> {
    if !trusted_owner(owner, euid) {
        return Some(anyhow::anyhow!(
            "{} is owned by uid {owner}, not by uid {euid} which runs hangwatch (nor root): another \
             user could plant or swap files in it; {CHOOSE_PRIVATE}",
            path.display(),
        ));
    }
    if mode & 0o022 != 0 {
        return Some(anyhow::anyhow!(
            "{} is writable by group or others (mode {:04o}): another user could plant or swap \
             files in it; {CHOOSE_PRIVATE}",
            path.display(),
            mode & 0o7777,
        ));
    }
    None
}

fn io_err(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

impl SafeDir {
    /// Open (and with `create`, make: parents 0755, the last 0700) `path` as a private directory:
    /// no symlink on the way, no ancestor others could rename in, and the directory itself owned
    /// by the effective uid and not group/world-writable. Refuses with the fix otherwise.
    pub fn open_private(path: &Path, create: bool) -> Result<SafeDir> {
        let d = Self::walk(path, create, 0o700)?;
        let st = rfs::fstat(&d.fd).with_context(|| format!("stat {}", path.display()))?;
        check_private(&st, path)?;
        Ok(d)
    }

    /// Open a directory the user named on the command line, as given (their path, their
    /// links); what is then read inside it goes through the descriptor without following links.
    pub fn open_given(path: &Path) -> Result<SafeDir> {
        let fd = rfs::open(path, DIR_FLAGS.difference(OFlags::NOFOLLOW), Mode::empty())
            .map_err(io_err)
            .with_context(|| format!("opening directory {}", path.display()))?;
        Ok(SafeDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Open an existing directory to read what it holds (`hangwatch list`): the path as given,
    /// except that its last component must not be a symlink.
    pub fn open_nofollow(path: &Path) -> Result<SafeDir> {
        let fd = rfs::open(path, DIR_FLAGS, Mode::empty())
            .map_err(|e| Self::open_error(e, path, path))
            .with_context(|| format!("incident directory {}", path.display()))?;
        Ok(SafeDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Like [`SafeDir::open_private`] but created 0755: a directory others may traverse to
    /// reach what it holds (the control socket), still writable only by us.
    pub fn open_shared(path: &Path, create: bool) -> Result<SafeDir> {
        let d = Self::walk(path, create, 0o755)?;
        let st = rfs::fstat(&d.fd).with_context(|| format!("stat {}", path.display()))?;
        check_private(&st, path)?;
        Ok(d)
    }

    fn walk(path: &Path, create: bool, last_mode: u32) -> Result<SafeDir> {
        let (mut fd, mut at) = if path.is_absolute() {
            (
                rfs::open("/", DIR_FLAGS, Mode::empty())?,
                PathBuf::from("/"),
            )
        } else {
            (
                rfs::open(".", DIR_FLAGS, Mode::empty())?,
                PathBuf::from("."),
            )
        };
        // `..` is opened like any component: relative to a directory we already hold, it is
        // that directory's real parent, whatever links the path string went through.
        let comps: Vec<&OsStr> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n),
                Component::ParentDir => Some(OsStr::new("..")),
                _ => None,
            })
            .collect();
        for (i, name) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let st = rfs::fstat(&fd).with_context(|| format!("stat {}", at.display()))?;
            check_ancestor(&st, &at)?;
            at.push(name);
            let next = match rfs::openat(&fd, *name, DIR_FLAGS, Mode::empty()) {
                Ok(f) => f,
                Err(Errno::NOENT) if create => {
                    let mode = if last { last_mode } else { 0o755 };
                    match rfs::mkdirat(&fd, *name, Mode::from_raw_mode(mode)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(io_err(e))
                                .with_context(|| format!("creating {}", at.display()))
                        }
                    }
                    let f = rfs::openat(&fd, *name, DIR_FLAGS, Mode::empty())
                        .map_err(|e| Self::open_error(e, path, &at))?;
                    // mkdir's mode was cut by the umask; set exactly what we mean.
                    rfs::fchmod(&f, Mode::from_raw_mode(mode))
                        .with_context(|| format!("chmod {}", at.display()))?;
                    f
                }
                Err(e) => return Err(Self::open_error(e, path, &at)),
            };
            fd = next;
        }
        Ok(SafeDir {
            fd,
            path: path.to_path_buf(),
        })
    }

    fn open_error(e: Errno, path: &Path, at: &Path) -> anyhow::Error {
        match e {
            Errno::LOOP => symlink_error(path, at),
            Errno::NOTDIR => match rfs::lstat(at) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    symlink_error(path, at)
                }
                _ => anyhow::anyhow!("{} is not a directory", at.display()),
            },
            e => anyhow::Error::from(io_err(e)).context(format!("opening {}", at.display())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A new private (0700) subdirectory; fails if `name` exists.
    pub fn mkdir_private(&self, name: &str) -> Result<SafeDir> {
        let p = self.path.join(name);
        rfs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700))
            .map_err(io_err)
            .with_context(|| format!("creating {}", p.display()))?;
        let fd = rfs::openat(&self.fd, name, DIR_FLAGS, Mode::empty())
            .map_err(|e| Self::open_error(e, &p, &p))?;
        rfs::fchmod(&fd, Mode::from_raw_mode(0o700)).map_err(io_err)?;
        Ok(SafeDir { fd, path: p })
    }

    /// An existing subdirectory, not through a symlink.
    pub fn subdir(&self, name: &str) -> Result<SafeDir> {
        let p = self.path.join(name);
        let fd = rfs::openat(&self.fd, name, DIR_FLAGS, Mode::empty())
            .map_err(|e| Self::open_error(e, &p, &p))?;
        Ok(SafeDir { fd, path: p })
    }

    /// Create `name` (O_EXCL, O_NOFOLLOW, 0600 whatever the umask), write and fsync it.
    pub fn create_file(&self, name: &str, bytes: &[u8]) -> Result<()> {
        let p = self.path.join(name);
        let fd = rfs::openat(
            &self.fd,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_err)
        .with_context(|| format!("creating {}", p.display()))?;
        rfs::fchmod(&fd, Mode::from_raw_mode(0o600)).map_err(io_err)?;
        let mut f = File::from(fd);
        f.write_all(bytes)
            .with_context(|| format!("writing {}", p.display()))?;
        f.sync_all()
            .with_context(|| format!("fsync {}", p.display()))
    }

    /// Read `name` if it is a regular file with one link, at most `max` bytes (more is an
    /// error: the caller decides what to keep). Never follows a symlink.
    pub fn read_file(&self, name: &str, max: u64) -> std::io::Result<Vec<u8>> {
        read_regular_at(self.fd(), name, max)
    }

    /// Entries other than `.` and `..`, with their type (not following symlinks).
    pub fn entries(&self) -> Result<Vec<(String, FileType)>> {
        let dir = rfs::Dir::read_from(&self.fd)
            .map_err(io_err)
            .with_context(|| format!("listing {}", self.path.display()))?;
        let mut v = Vec::new();
        for e in dir {
            let e = e.map_err(io_err)?;
            let n = e.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            let name = String::from_utf8_lossy(n).into_owned();
            let ft = match e.file_type() {
                FileType::Unknown => {
                    rfs::statat(&self.fd, e.file_name(), AtFlags::SYMLINK_NOFOLLOW)
                        .map(|s| FileType::from_raw_mode(s.st_mode))
                        .unwrap_or(FileType::Unknown)
                }
                t => t,
            };
            v.push((name, ft));
        }
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }

    /// Rename `from` to `to` inside this directory.
    pub fn rename(&self, from: &str, to: &str, how: Rename) -> Result<()> {
        let flags = match how {
            Rename::NoReplace => RenameFlags::NOREPLACE,
            Rename::Exchange => RenameFlags::EXCHANGE,
        };
        rfs::renameat_with(&self.fd, from, &self.fd, to, flags)
            .map_err(io_err)
            .with_context(|| format!("renaming {from} to {to} in {}", self.path.display()))
    }

    /// Rename the file `from` over `to` inside this directory (a durable replace's last step).
    pub fn replace_file(&self, from: &str, to: &str) -> Result<()> {
        rfs::renameat(&self.fd, from, &self.fd, to)
            .map_err(io_err)
            .with_context(|| format!("renaming {from} to {to} in {}", self.path.display()))
    }

    /// Remove `name` and everything under it without following symlinks.
    pub fn remove_tree(&self, name: &str) -> Result<()> {
        match rfs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(Errno::NOENT) => return Ok(()),
            Err(Errno::ISDIR) | Err(Errno::PERM) => {}
            Err(e) => {
                return Err(io_err(e))
                    .with_context(|| format!("removing {}", self.path.join(name).display()))
            }
        }
        let sub = self.subdir(name)?;
        for (n, _) in sub.entries()? {
            sub.remove_tree(&n)?;
        }
        drop(sub);
        rfs::unlinkat(&self.fd, name, AtFlags::REMOVEDIR)
            .map_err(io_err)
            .with_context(|| format!("removing {}", self.path.join(name).display()))
    }

    /// Bytes of regular files under `name` (not following symlinks).
    pub fn tree_bytes(&self, name: &str) -> u64 {
        let Ok(st) = rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) else {
            return 0;
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => st.st_size as u64,
            FileType::Directory => match self.subdir(name) {
                Ok(d) => d
                    .entries()
                    .unwrap_or_default()
                    .iter()
                    .map(|(n, _)| d.tree_bytes(n))
                    .sum(),
                Err(_) => 0,
            },
            _ => 0,
        }
    }

    /// Modification time of `name` (not following symlinks), seconds and ns.
    pub fn mtime(&self, name: &str) -> Option<(i64, i64)> {
        let st = rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        Some((st.st_mtime as i64, st.st_mtime_nsec as i64))
    }

    pub fn sync(&self) -> Result<()> {
        rfs::fsync(&self.fd)
            .map_err(io_err)
            .with_context(|| format!("fsync {}", self.path.display()))
    }
}

/// Read `name` in `dir` only if it is a regular file with a single link (a hard link planted
/// by another user would have two), never following a symlink; at most `max` bytes.
pub fn read_regular_at(dir: BorrowedFd<'_>, name: &str, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind};
    if !is_plain_name(name) {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "is not a plain file name in this directory; refused",
        ));
    }
    match open_beneath(dir, name) {
        Ok(fd) => read_opened(fd, max),
        Err(Errno::LOOP) | Err(Errno::XDEV) => Err(Error::new(
            ErrorKind::InvalidData,
            "is a symbolic link; refused (a planted link could point at any file)",
        )),
        Err(e) => Err(io_err(e)),
    }
}

/// One path component naming an entry of the directory itself: not empty, no `/`, not `.`
/// or `..`, no NUL. An absolute or multi-component name could leave the directory.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\0'])
}

/// Open `name` read-only beneath `dir` and never through a symlink: `openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it (5.6+), else `openat` with
/// `O_NOFOLLOW` (enough for the plain names [`is_plain_name`] lets through).
fn open_beneath(dir: BorrowedFd<'_>, name: &str) -> rustix::io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let resolve = rfs::ResolveFlags::BENEATH | rfs::ResolveFlags::NO_SYMLINKS;
    match rfs::openat2(dir, name, flags, Mode::empty(), resolve) {
        Err(Errno::NOSYS) | Err(Errno::PERM) => rfs::openat(dir, name, flags, Mode::empty()),
        r => r,
    }
}

fn read_opened(fd: OwnedFd, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind};
    let st = rfs::fstat(&fd).map_err(io_err)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "is not a regular file; refused",
        ));
    }
    if st.st_nlink > 1 {
        return Err(Error::new(
            ErrorKind::InvalidData,
            "has more than one hard link; refused (it could be another file planted under this name)",
        ));
    }
    if st.st_size as u64 > max {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("is {} bytes, over the {max}-byte limit", st.st_size),
        ));
    }
    let mut v = Vec::with_capacity(st.st_size as usize);
    File::from(fd).take(max + 1).read_to_end(&mut v)?;
    if v.len() as u64 > max {
        return Err(Error::new(
            ErrorKind::InvalidData,
            format!("grew past the {max}-byte limit"),
        ));
    }
    Ok(v)
}

/// Write a user-named output file (`--out`): created as a new 0600 file next to `path` with
/// O_EXCL|O_NOFOLLOW, fsynced, then renamed over `path`. A symlink or file another user planted
/// at `path` is replaced, never written through; nothing is ever truncated in place.
pub fn write_new_file(path: &Path, write: impl FnOnce(&mut File) -> Result<()>) -> Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    let dir = rfs::open(
        parent,
        DIR_FLAGS.difference(OFlags::NOFOLLOW),
        Mode::empty(),
    )
    .map_err(io_err)
    .with_context(|| format!("opening {}", parent.display()))?;
    let mut tmp = b".".to_vec();
    tmp.extend_from_slice(name.as_bytes());
    tmp.extend_from_slice(format!(".tmp-{}", std::process::id()).as_bytes());
    let tmp = std::ffi::OsString::from_vec(tmp);
    let fd = rfs::openat(
        &dir,
        &tmp,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(io_err)
    .with_context(|| format!("creating a temporary file next to {}", path.display()))?;
    let result: Result<()> = (|| {
        rfs::fchmod(&fd, Mode::from_raw_mode(0o600)).map_err(io_err)?;
        let mut f = File::from(fd);
        write(&mut f)?;
        f.sync_all()?;
        rfs::renameat(&dir, &tmp, &dir, name)
            .map_err(io_err)
            .with_context(|| format!("renaming into {}", path.display()))?;
        rfs::fsync(&dir).map_err(io_err)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = rfs::unlinkat(&dir, &tmp, AtFlags::empty());
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmp(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("hw-fsafe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn creates_private_and_refuses_symlinks_and_loose_modes() {
        let base = tmp("walk");
        let d = SafeDir::open_private(&base.join("a/b"), true).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&base.join("a/b")), 0o700);
        assert_eq!(mode(&base.join("a")), 0o755);
        d.create_file("f", b"x").unwrap();
        assert_eq!(mode(&base.join("a/b/f")), 0o600);
        assert!(d.create_file("f", b"y").is_err(), "O_EXCL");
        std::os::unix::fs::symlink(base.join("a"), base.join("link")).unwrap();
        let e = SafeDir::open_private(&base.join("link/b"), false).unwrap_err();
        assert!(format!("{e:#}").contains("is a symbolic link"), "{e:#}");
        let e = SafeDir::open_private(&base.join("link"), true).unwrap_err();
        assert!(format!("{e:#}").contains("is a symbolic link"), "{e:#}");
        assert!(SafeDir::open_private(&base.join("a/b/../b"), false).is_ok());
        std::fs::set_permissions(base.join("a/b"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = SafeDir::open_private(&base.join("a/b"), false).unwrap_err();
        assert!(
            format!("{e:#}").contains("choose a directory only"),
            "{e:#}"
        );
        std::fs::set_permissions(base.join("a"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = SafeDir::open_private(&base.join("a/b"), false).unwrap_err();
        assert!(format!("{e:#}").contains("without the sticky bit"), "{e:#}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn the_service_user_or_root_may_own_the_output_directory() {
        let p = Path::new("/var/lib/hangwatch/incidents");
        // The packaged service (uid 999 here) in its own StateDirectory, or in one root made.
        assert!(private_problem(999, 0o40700, 999, p).is_none());
        assert!(private_problem(0, 0o40750, 999, p).is_none());
        // root in its own directory.
        assert!(private_problem(0, 0o40700, 0, p).is_none());
        // Another user's directory, whoever runs hangwatch: refused with the fix.
        for euid in [0, 999] {
            let e = private_problem(1000, 0o40700, euid, p).unwrap();
            assert!(format!("{e}").contains("choose a directory only"), "{e}");
            assert!(!format!("{e}").contains("chown"), "{e}");
        }
        // The right owner but writable by others.
        let e = private_problem(999, 0o40770, 999, p).unwrap();
        assert!(format!("{e}").contains("choose a directory only"), "{e}");
    }

    #[test]
    fn advice_for_a_shared_directory_never_loosens_or_takes_it() {
        // `--output /tmp` used to advise `chmod 0700 /tmp`; another user's directory `chown`.
        let tmp = private_problem(0, 0o41777, 0, Path::new("/tmp"))
            .unwrap()
            .to_string();
        assert!(!tmp.contains("chmod") && !tmp.contains("chown"), "{tmp}");
        assert!(
            tmp.contains("choose a directory only this user can write"),
            "{tmp}"
        );
        let theirs = private_problem(1000, 0o40700, 0, Path::new("/home/u/x"))
            .unwrap()
            .to_string();
        assert!(
            !theirs.contains("chown") && !theirs.contains("chmod"),
            "{theirs}"
        );
    }

    /// The real walk as a non-root uid (setpriv): it creates and reuses a directory it owns
    /// under a root-owned parent, and refuses one root made for another user.
    #[test]
    fn an_unprivileged_agent_owns_its_output_directory() {
        let base = tmp("svc");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mine = base.join("state");
        std::fs::create_dir(&mine).unwrap();
        std::os::unix::fs::chown(&mine, Some(65534), Some(65534)).unwrap();
        let other = base.join("other");
        std::fs::create_dir(&other).unwrap();
        std::os::unix::fs::chown(&other, Some(1000), Some(1000)).unwrap();
        // This test binary again, as uid 65534, running only the probe below.
        let exe = std::env::current_exe().unwrap();
        let run = |dir: &Path| {
            std::process::Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
                .arg(&exe)
                .args([
                    "--exact",
                    "fsafe::tests::probe_open_private_as_given_user",
                    "--ignored",
                    "--nocapture",
                ])
                .env("HW_FSAFE_PROBE_DIR", dir)
                .output()
                .expect("setpriv (util-linux)")
        };
        let o = run(&mine.join("incidents"));
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(said.contains("PROBE ok"), "{said}");
        assert!(mine.join("incidents").is_dir());
        let o = run(&other);
        let said = String::from_utf8_lossy(&o.stdout);
        assert!(
            said.contains("PROBE err") && said.contains("owned by uid 1000"),
            "{said}"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    /// Run by `an_unprivileged_agent_owns_its_output_directory` as another uid.
    #[test]
    #[ignore = "a helper: an_unprivileged_agent_owns_its_output_directory runs it as uid 65534"]
    fn probe_open_private_as_given_user() {
        let Some(dir) = std::env::var_os("HW_FSAFE_PROBE_DIR") else {
            return;
        };
        match SafeDir::open_private(Path::new(&dir), true) {
            Ok(_) => println!("PROBE ok"),
            Err(e) => println!("PROBE err {e:#}"),
        }
    }

    #[test]
    fn reads_only_regular_single_link_files() {
        let base = tmp("read");
        let d = SafeDir::open_private(&base, true).unwrap();
        d.create_file("ok", b"hello").unwrap();
        std::fs::write(base.join("secret"), b"s3cret").unwrap();
        std::os::unix::fs::symlink(base.join("secret"), base.join("link")).unwrap();
        std::fs::hard_link(base.join("secret"), base.join("hard")).unwrap();
        std::fs::create_dir(base.join("dir")).unwrap();
        assert_eq!(d.read_file("ok", 100).unwrap(), b"hello");
        for (n, why) in [
            ("link", "symbolic link"),
            ("hard", "hard link"),
            ("dir", "not a regular file"),
        ] {
            let e = d.read_file(n, 100).unwrap_err();
            assert!(e.to_string().contains(why), "{n}: {e}");
        }
        assert!(d
            .read_file("ok", 3)
            .unwrap_err()
            .to_string()
            .contains("limit"));
        d.remove_tree("dir").unwrap();
        d.remove_tree("link").unwrap();
        assert!(
            base.join("secret").exists(),
            "remove_tree must not follow the link"
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn write_new_file_replaces_a_planted_symlink_instead_of_following_it() {
        let base = tmp("out");
        std::fs::create_dir_all(&base).unwrap();
        let victim = base.join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        let out = base.join("out.tar.gz");
        std::os::unix::fs::symlink(&victim, &out).unwrap();
        write_new_file(&out, |f| Ok(f.write_all(b"new")?)).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
        let m = std::fs::symlink_metadata(&out).unwrap();
        assert!(m.is_file());
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&out).unwrap(), b"new");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
