<#
.SYNOPSIS
  Enrol this Windows host as a cis490 training worker (a Scheduled Task).
.DESCRIPTION
  Runs the worker's self-test against the spool, then registers a Scheduled
  Task that starts `cis490-spool work` at boot and restarts it on failure.
  -DryRun prints what it would register and changes nothing.
.EXAMPLE
  .\scripts\install-training-worker-windows.ps1 -Spool \\nas\cis490\spool -HostId k-gamingcom -Slots 1
#>
param(
  [Parameter(Mandatory = $true)][string]$Spool,
  [string]$HostId = $env:COMPUTERNAME.ToLower(),
  [int]$Slots = 0,
  [string]$Python = "",
  [switch]$DryRun
)
$ErrorActionPreference = "Stop"
$Repo = Split-Path -Parent $PSScriptRoot
if (-not $Python) {
  $venv = Join-Path $Repo ".venv\Scripts\python.exe"
  if (Test-Path $venv) { $Python = $venv } else { $Python = (Get-Command python).Source }
}
$Bin = Join-Path $Repo "bin\cis490-spool"

Write-Host "self-test: $Python $Bin --spool $Spool work --self-test --host-id $HostId"
& $Python $Bin --spool $Spool work --self-test --host-id $HostId
if ($LASTEXITCODE -ne 0) { Write-Error "self-test failed; nothing installed"; exit 1 }

$WorkArgs = "`"$Bin`" --spool `"$Spool`" work --host-id $HostId"
if ($Slots -gt 0) { $WorkArgs += " --slots $Slots" }
$Action = New-ScheduledTaskAction -Execute $Python -Argument $WorkArgs -WorkingDirectory $Repo
$Trigger = New-ScheduledTaskTrigger -AtStartup
$Settings = New-ScheduledTaskSettingsSet -RestartCount 999 -RestartInterval (New-TimeSpan -Minutes 1) `
  -ExecutionTimeLimit ([TimeSpan]::Zero) -StartWhenAvailable
if ($DryRun) {
  Write-Host "--- would register Scheduled Task 'cis490-training-worker':"
  Write-Host "    $Python $WorkArgs (at startup, restart on failure, no time limit)"
  exit 0
}
Register-ScheduledTask -TaskName "cis490-training-worker" -Action $Action -Trigger $Trigger `
  -Settings $Settings -RunLevel Limited -Force | Out-Null
Start-ScheduledTask -TaskName "cis490-training-worker"
Write-Host "registered and started Scheduled Task 'cis490-training-worker'"
