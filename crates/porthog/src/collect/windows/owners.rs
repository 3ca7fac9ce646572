//! Who owns the sockets: the image path of each pid (`OpenProcess` with
//! `PROCESS_QUERY_LIMITED_INFORMATION` + `QueryFullProcessImageNameW`), the image name from a
//! toolhelp snapshot where the process cannot be opened, and the services each svchost hosts
//! (`EnumServicesStatusExW`, SERVICE_WIN32, with process ids), as `netstat -b` shows them.

use std::collections::HashMap;

use porthog_core::win_table::Owner;

use super::from_wide_nul;
use windows_sys::Win32::Foundation::{CloseHandle, ERROR_MORE_DATA, HANDLE, INVALID_HANDLE_VALUE};
use windows_sys::Win32::Security::{
    GetTokenInformation, TOKEN_ELEVATION, TOKEN_QUERY, TokenElevation,
};
use windows_sys::Win32::System::Diagnostics::ToolHelp::{
    CreateToolhelp32Snapshot, PROCESSENTRY32W, Process32FirstW, Process32NextW, TH32CS_SNAPPROCESS,
};
use windows_sys::Win32::System::Services::{
    CloseServiceHandle, ENUM_SERVICE_STATUS_PROCESSW, EnumServicesStatusExW, OpenSCManagerW,
    SC_ENUM_PROCESS_INFO, SC_MANAGER_ENUMERATE_SERVICE, SERVICE_ACTIVE, SERVICE_WIN32,
};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_NAME_WIN32,
    PROCESS_QUERY_LIMITED_INFORMATION, QueryFullProcessImageNameW,
};

/// The owners of `pids`.
pub fn owners(pids: &[u32]) -> Vec<Owner> {
    let images = toolhelp_images();
    let services = services_by_pid();
    pids.iter()
        .map(|&pid| Owner {
            pid,
            path: image_path(pid),
            image: images.get(&pid).cloned(),
            user: None,
            services: services.get(&pid).cloned().unwrap_or_default(),
        })
        .collect()
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

/// The full image path, when the process can be opened.
fn image_path(pid: u32) -> Option<String> {
    // SAFETY: OpenProcess returns null on failure; a handle is closed below.
    let handle = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, pid) };
    if handle.is_null() {
        return None;
    }
    let mut buf = [0u16; 1024];
    let mut len = buf.len() as u32;
    // SAFETY: `buf` holds `len` u16s; the call writes at most that and sets `len` to the
    // characters written.
    let ok = unsafe {
        QueryFullProcessImageNameW(handle, PROCESS_NAME_WIN32, buf.as_mut_ptr(), &mut len)
    };
    // SAFETY: `handle` was opened above and is closed once.
    unsafe { CloseHandle(handle) };
    (ok != 0).then(|| String::from_utf16_lossy(&buf[..(len as usize).min(buf.len())]))
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
