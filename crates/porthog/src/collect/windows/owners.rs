//! Who owns the sockets: the image path of each pid (`OpenProcess` with
//! `PROCESS_QUERY_LIMITED_INFORMATION` + `QueryFullProcessImageNameW`), the image name from a
//! toolhelp snapshot where the process cannot be opened, and the services each svchost hosts
//! (`EnumServicesStatusExW`, SERVICE_WIN32, with process ids), as `netstat -b` shows them,
//! and the user each runs as (`OpenProcessToken` + `TokenUser` + `LookupAccountSidW`), cached
//! per process and per SID across the samples of `watch` and `record`.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use porthog_core::win_table::Owner;

use super::from_wide_nul;
use windows_sys::Win32::Foundation::{
    CloseHandle, ERROR_INSUFFICIENT_BUFFER, ERROR_MORE_DATA, FILETIME, GetLastError, HANDLE,
    INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::{
    GetLengthSid, GetTokenInformation, LookupAccountSidW, PSID, SID_NAME_USE, TOKEN_ELEVATION,
    TOKEN_QUERY, TOKEN_USER, TokenElevation, TokenUser,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Services::{
    CloseServiceHandle, ENUM_SERVICE_STATUS_PROCESSW, EnumServicesStatusExW, OpenSCManagerW,
    SC_ENUM_PROCESS_INFO, SC_MANAGER_ENUMERATE_SERVICE, SERVICE_ACTIVE, SERVICE_WIN32,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetProcessTimes, OpenProcess, OpenProcessToken, PROCESS_NAME_WIN32,
    PROCESS_QUERY_LIMITED_INFORMATION, QueryFullProcessImageNameW,
};

/// User names already looked up: per process (its pid and creation time, so a reused pid is
/// looked up again) and per SID (`LookupAccountSidW` may ask a domain controller). Both are
/// kept for the life of porthog; the per-process map only for the pids of the latest call.
#[derive(Default)]
struct Users {
    by_process: HashMap<(u32, u64), Option<String>>,
    by_sid: HashMap<Vec<u8>, Option<String>>,
}

static USERS: Mutex<Option<Users>> = Mutex::new(None);

/// The owners of `pids`.
pub fn owners(pids: &[u32]) -> Vec<Owner> {
    let images = toolhelp_images();
    let services = services_by_pid();
    // A poisoned lock only means a panic elsewhere mid-lookup: the maps are still valid.
    let mut guard = USERS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let users = guard.get_or_insert_with(Users::default);
    let mut live = HashSet::with_capacity(pids.len());
    let owners = pids
        .iter()
        .map(|&pid| {
            let process = Process::open(pid);
            let user = process.as_ref().and_then(|p| {
                let key = (pid, p.created());
                live.insert(key);
                users.by_process.entry(key).or_insert_with(|| p.user(&mut users.by_sid)).clone()
            });
            Owner {
                pid,
                path: process.as_ref().and_then(Process::image_path),
                image: images.get(&pid).cloned(),
                user,
                services: services.get(&pid).cloned().unwrap_or_default(),
            }
        })
        .collect();
    users.by_process.retain(|key, _| live.contains(key));
    owners
}

/// Whether porthog runs elevated (TokenElevation of its own token).
pub fn elevated() -> bool {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pseudo-handle of the current process needs no closing; `token` is written
    // on success and closed below.
    if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
        return false;
    }
    let mut elevation = TOKEN_ELEVATION { TokenIsElevated: 0 };
    let mut len = 0u32;
    // SAFETY: the buffer is a TOKEN_ELEVATION of the size given; `token` is valid.
    let ok = unsafe {
        GetTokenInformation(
            token,
            TokenElevation,
            (&raw mut elevation).cast(),
            size_of::<TOKEN_ELEVATION>() as u32,
            &mut len,
        )
    };
    // SAFETY: `token` was opened above and is closed once.
    unsafe { CloseHandle(token) };
    ok != 0 && elevation.TokenIsElevated != 0
}

/// A process opened with `PROCESS_QUERY_LIMITED_INFORMATION` (what an unelevated user gets
/// for its own processes; elevated, for all but protected ones), closed on drop.
struct Process(HANDLE);

impl Drop for Process {
    fn drop(&mut self) {
        // SAFETY: the handle came from OpenProcess and is closed once.
        unsafe { CloseHandle(self.0) };
    }
}

impl Process {
    fn open(pid: u32) -> Option<Process> {
        // SAFETY: OpenProcess returns null on failure.
        let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
        (!handle.is_null()).then_some(Process(handle))
    }

    /// The full image path.
    fn image_path(&self) -> Option<String> {
        let mut buf = [0u16; 1024];
        let mut len = buf.len() as u32;
        // SAFETY: `buf` holds `len` u16s; the call writes at most that and sets `len` to the
        // characters written.
        let ok = unsafe {
            QueryFullProcessImageNameW(self.0, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len)
        };
        (ok != 0).then(|| String::from_utf16_lossy(&buf[..(len as usize).min(buf.len())]))
    }

    /// Its creation time (100 ns since 1601), which tells a reused pid from the process that
    /// had it before; 0 when unreadable.
    fn created(&self) -> u64 {
        let zero = FILETIME { dwLowDateTime: 0, dwHighDateTime: 0 };
        let (mut created, mut exited, mut kernel, mut user) = (zero, zero, zero, zero);
        // SAFETY: four FILETIMEs to write; the handle has PROCESS_QUERY_LIMITED_INFORMATION,
        // which GetProcessTimes accepts.
        let ok =
            unsafe { GetProcessTimes(self.0, &mut created, &mut exited, &mut kernel, &mut user) };
        if ok == 0 {
            return 0;
        }
        (u64::from(created.dwHighDateTime) << 32) | u64::from(created.dwLowDateTime)
    }

    /// `DOMAIN\user` of its token, looked up once per SID; None when the token cannot be
    /// opened (another user's process, not elevated) or the SID has no name.
    fn user(&self, by_sid: &mut HashMap<Vec<u8>, Option<String>>) -> Option<String> {
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: `self.0` is a valid process handle; `token` is written on success and
        // closed below.
        if unsafe { OpenProcessToken(self.0, TOKEN_QUERY, &mut token) } == 0 {
            return None;
        }
        let user = token_sid(token).and_then(|sid| {
            by_sid.entry(sid.clone()).or_insert_with(|| account_name(&sid)).clone()
        });
        // SAFETY: `token` was opened above and is closed once.
        unsafe { CloseHandle(token) };
        user
    }
}

/// The bytes of a token's user SID (`GetTokenInformation(TokenUser)`).
fn token_sid(token: HANDLE) -> Option<Vec<u8>> {
    // u64 words: TOKEN_USER holds a pointer, and the SID it points to follows in the buffer.
    let mut buf: Vec<u64> = vec![0; 16];
    for _ in 0..2 {
        let bytes = u32::try_from(buf.len() * 8).unwrap_or(u32::MAX);
        let mut needed = 0u32;
        // SAFETY: `buf` holds `bytes` writable bytes, aligned for TOKEN_USER.
        let ok = unsafe {
            GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), bytes, &mut needed)
        };
        if ok != 0 {
            // SAFETY: the call wrote a TOKEN_USER at the start of `buf`; its Sid points to a
            // valid SID inside `buf` of GetLengthSid bytes.
            return unsafe {
                let sid: PSID = (*buf.as_ptr().cast::<TOKEN_USER>()).User.Sid;
                let len = GetLengthSid(sid) as usize;
                Some(std::slice::from_raw_parts(sid.cast::<u8>(), len).to_vec())
            };
        }
        // SAFETY: plain call.
        if unsafe { GetLastError() } != ERROR_INSUFFICIENT_BUFFER {
            return None;
        }
        buf.resize((needed as usize).div_ceil(8) + 1, 0);
    }
    None
}

/// `DOMAIN\name` of a SID (`LookupAccountSidW` on the local machine), or the name alone when
/// it has no domain.
fn account_name(sid: &[u8]) -> Option<String> {
    let (mut name, mut domain) = (vec![0u16; 256], vec![0u16; 256]);
    for _ in 0..2 {
        let (mut name_len, mut domain_len) = (name.len() as u32, domain.len() as u32);
        let mut kind: SID_NAME_USE = 0;
        // SAFETY: `sid` is a valid SID (copied from a token); both buffers hold the lengths
        // given, and the call sets them to the characters written (or needed).
        let ok = unsafe {
            LookupAccountSidW(
                std::ptr::null(),
                sid.as_ptr().cast_mut().cast(),
                name.as_mut_ptr(),
                &mut name_len,
                domain.as_mut_ptr(),
                &mut domain_len,
                &mut kind,
            )
        };
        if ok != 0 {
            let (name, domain) = (from_wide_nul(&name), from_wide_nul(&domain));
            return match (name.is_empty(), domain.is_empty()) {
                (true, _) => None,
                (false, true) => Some(name),
                (false, false) => Some(format!("{domain}\\{name}")),
            };
        }
        // SAFETY: plain call.
        if unsafe { GetLastError() } != ERROR_INSUFFICIENT_BUFFER {
            return None;
        }
        name.resize(name_len as usize + 1, 0);
        domain.resize(domain_len as usize + 1, 0);
    }
    None
}

/// pid → image name of every process, from one toolhelp snapshot (works unelevated for other
/// users' processes, which OpenProcess may refuse).
fn toolhelp_images() -> HashMap<u32, String> {
    let mut out = HashMap::new();
    // SAFETY: plain call; the handle is checked and closed below.
    let snap = unsafe { CreateToolhelp32Snapshot(TH32CS_SNAPPROCESS, 0) };
    if snap == INVALID_HANDLE_VALUE || snap.is_null() {
        return out;
    }
    // SAFETY: PROCESSENTRY32W is plain data; zero is a valid value.
    let mut entry: PROCESSENTRY32W = unsafe { std::mem::zeroed() };
    entry.dwSize = size_of::<PROCESSENTRY32W>() as u32;
    // SAFETY: `entry` has its dwSize set as the API requires; `snap` is valid.
    let mut ok = unsafe { Process32FirstW(snap, &mut entry) };
    while ok != 0 {
        out.insert(entry.th32ProcessID, from_wide_nul(&entry.szExeFile));
        // SAFETY: as above.
        ok = unsafe { Process32NextW(snap, &mut entry) };
    }
    // SAFETY: `snap` was opened above and is closed once.
    unsafe { CloseHandle(snap) };
    out
}

/// pid → names of the running Win32 services in that process.
fn services_by_pid() -> HashMap<u32, Vec<String>> {
    let mut out: HashMap<u32, Vec<String>> = HashMap::new();
    // SAFETY: null machine and database mean the local active database; checked and closed.
    let scm =
        unsafe { OpenSCManagerW(std::ptr::null(), std::ptr::null(), SC_MANAGER_ENUMERATE_SERVICE) };
    if scm.is_null() {
        return out;
    }
    let mut buf: Vec<u64> = vec![0; 8192];
    let mut resume = 0u32;
    loop {
        let (mut needed, mut returned) = (0u32, 0u32);
        let bytes = u32::try_from(buf.len() * 8).unwrap_or(u32::MAX);
        // SAFETY: `buf` holds `bytes` writable bytes, 8-aligned for the entries; the strings
        // the entries point to lie inside the same buffer.
        let ok = unsafe {
            EnumServicesStatusExW(
                scm,
                SC_ENUM_PROCESS_INFO,
                SERVICE_WIN32,
                SERVICE_ACTIVE,
                buf.as_mut_ptr().cast(),
                bytes,
                &mut needed,
                &mut returned,
                &mut resume,
                std::ptr::null(),
            )
        };
        let more = ok == 0
            && std::io::Error::last_os_error().raw_os_error() == Some(ERROR_MORE_DATA as i32);
        if ok == 0 && !more {
            break;
        }
        let entries = buf.as_ptr().cast::<ENUM_SERVICE_STATUS_PROCESSW>();
        for i in 0..returned as usize {
            // SAFETY: the call wrote `returned` entries at the start of the buffer.
            let e = unsafe { &*entries.add(i) };
            let pid = e.ServiceStatusProcess.dwProcessId;
            if pid != 0 {
                // SAFETY: lpServiceName points to a NUL-terminated string inside `buf`.
                out.entry(pid).or_default().push(unsafe { wide(e.lpServiceName) });
            }
        }
        if !more {
            break;
        }
        if returned == 0 {
            // The buffer is too small for even one entry: grow it to what the call asked.
            buf.resize((needed as usize).div_ceil(8) + 1, 0);
        }
    }
    // SAFETY: `scm` was opened above and is closed once.
    unsafe { CloseServiceHandle(scm) };
    for names in out.values_mut() {
        names.sort();
    }
    out
}

/// A NUL-terminated UTF-16 string.
///
/// # Safety
/// `p` is null or points to a NUL-terminated UTF-16 string.
unsafe fn wide(p: *const u16) -> String {
    if p.is_null() {
        return String::new();
    }
    let mut len = 0;
    // SAFETY: the caller promises a terminating NUL.
    while unsafe { *p.add(len) } != 0 {
        len += 1;
    }
    // SAFETY: `len` u16s before the NUL are readable.
    String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(p, len) })
}
