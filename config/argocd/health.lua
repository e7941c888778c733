-- Argo CD health check for debug.shellcar.dev/DebugSession.
--
-- Paste into argocd-cm as resource.customizations.health.debug.shellcar.dev_DebugSession
-- (config/argocd/argocd-cm-patch.yaml holds exactly this file), or run it from Argo CD's
-- resource_customizations layout (config/argocd/resource_customizations/).
--
-- Written for Lua 5.1 with only the base and table libraries: Argo CD runs it in
-- gopher-lua and, for a script from argocd-cm, opens no string library.
--
--   no status yet, or a spec the operator has not seen      Progressing
--   Failed, or Stalled=True                                  Degraded
--   AwaitingApproval                                         Suspended
--   Expired, Ended (a finished session, kept as a record)    Healthy
--   Ready=True (Active)                                      Healthy
--   Ready=False with a reason people must act on             Degraded
--   anything else (Pending, Injecting)                       Progressing
--
-- A missing DebugSession is Argo CD's own Missing; this script never sees one.

local hs = {}

-- The Ready reasons of a debugger that will not start without someone's help: the
-- kubelet's waiting reasons, an unschedulable pod, a workload that cannot create pods.
local failing = {
  ErrImagePull = true,
  ImagePullBackOff = true,
  ErrImageNeverPull = true,
  InvalidImageName = true,
  CreateContainerConfigError = true,
  CreateContainerError = true,
  RunContainerError = true,
  CrashLoopBackOff = true,
  Unschedulable = true,
  ReplicaFailure = true,
}

local function condition(status, kind)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == kind then
      return c
    end
  end
  return nil
end

local function report(code, message)
  hs.status = code
  hs.message = message
  return hs
end

local status = obj.status
if status == nil or status.phase == nil then
  return report("Progressing", "Waiting for the shellcar operator to take up the session")
end

local generation = obj.metadata.generation
local observed = status.observedGeneration
if generation ~= nil and observed ~= nil and observed < generation then
  return report("Progressing", "Waiting for the shellcar operator to observe generation "
    .. generation .. " of the session (its status is of generation " .. observed .. ")")
end

local ready = condition(status, "Ready")
local stalled = condition(status, "Stalled")
local message = status.message
if message == nil or message == "" then
  if ready ~= nil and ready.message ~= nil then
    message = ready.message
  else
    message = "DebugSession is " .. status.phase
  end
end

if status.phase == "Failed" or (stalled ~= nil and stalled.status == "True") then
  return report("Degraded", message)
end
if status.phase == "AwaitingApproval" then
  return report("Suspended", message)
end
if status.phase == "Expired" or status.phase == "Ended" then
  return report("Healthy", message)
end
if ready ~= nil and ready.status == "True" then
  return report("Healthy", message)
end
if ready ~= nil and failing[ready.reason] then
  return report("Degraded", message)
end
return report("Progressing", message)
